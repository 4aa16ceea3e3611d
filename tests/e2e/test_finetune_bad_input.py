"""Bad input to the fine-tune fails before any training: one clear error, nothing registered.

Inputs the schema can judge alone (PRE_RUN) are refused by the CLI before a run exists; the others
(data, images, the base model) need the run and fail it before the trainer starts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness import colour_dataset, prefetch


def _csv(path, rows, header=("image_path", "prompt", "response")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def bad(e2e, tiny_models):
    """Datasets with one problem each, on the shared e2e home."""
    good = colour_dataset(e2e, "good-shapes", n=4)
    first_image = list(csv.reader(open(good)))[1][0]
    d = e2e.root / "bad"
    d.mkdir()
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (d / "notes.txt").write_text("hello")
    sets = {
        "missing-file": [(str(d / "nope.png"), "What colour?", "red")],
        "corrupt-image": [(str(d / "corrupt.png"), "What colour?", "red")],
        "not-an-image": [(str(d / "notes.txt"), "What colour?", "red")],
        "bad-url": [("http://127.0.0.1:9/img.png", "What colour?", "red")],
        "empty-response": [(first_image, "What colour?", "red"), (first_image, "What colour?", "")],
        "mixed": [(first_image, "What colour?", "red"), (str(d / "nope.png"), "What colour?", "blue")],
        "placeholder-mismatch": [(first_image, "<image> or <image>: which is red?", "the first")],
    }
    for name, rows in sets.items():
        e2e.mix("dataset", "create", name, "--file", _csv(d / f"{name}.csv", rows), check=0)
    # VQA shape: a list of answers per row (never stringified into "['red', 'reddish']")
    answers = d / "list-response.jsonl"
    answers.write_text(
        "".join(
            json.dumps({"image_path": first_image, "prompt": "What colour?", "response": a}) + "\n"
            for a in (["red", "reddish"], ["red"])
        )
    )
    e2e.mix("dataset", "create", "list-response", "--file", answers, check=0)
    return {"base": str(tiny_models["llava"]), "good": "good-shapes"}


CASES = [
    (
        "missing column",
        ["--dataset_name", "good-shapes", "--image_column", "img"],
        "has no column img (--image_column)",
    ),
    (
        "lists columns",
        ["--dataset_name", "good-shapes", "--prompt_column", "question"],
        "its columns are: image_path, prompt, response",
    ),
    ("missing file", ["--dataset_name", "missing-file"], "not found"),
    ("corrupt image", ["--dataset_name", "corrupt-image"], "1 of 1 rows are unusable"),
    ("not an image", ["--dataset_name", "not-an-image"], "rows are unusable"),
    ("bad url", ["--dataset_name", "bad-url"], "rows are unusable"),
    ("empty response", ["--dataset_name", "empty-response"], "row 1: empty response"),
    (
        "list response",
        ["--dataset_name", "list-response"],
        'column \'response\' holds a list of answers (row 0: ["red", "reddish"]), not one response — pass --response_pick first',
    ),
    (
        "placeholder count",
        ["--dataset_name", "placeholder-mismatch"],
        "row 0: 2 <image> placeholder(s) but 1 image(s) in the image column",
    ),
    ("unknown model_type", ["--dataset_name", "good-shapes", "--model_type", "gpt2"], "unknown model_type 'gpt2'"),
    (
        "bad deepspeed",
        ["--dataset_name", "good-shapes", "--deepspeed_config", "zero1"],
        "'zero1' is not a DeepSpeed stage",
    ),
    ("no such dataset", ["--dataset_name", "nope"], "dataset 'nope' not found"),
    ("bad output name", ["--dataset_name", "good-shapes", "--output_model_name", "Bad Name"], "invalid model name"),
    (
        "phi3_v needs trust",
        ["--dataset_name", "good-shapes", "--model_type", "phi3_v", "--base_model", "PHI3"],
        "runs model code downloaded from the model hub",
    ),
    (
        "qlora on a quantized base",
        ["--dataset_name", "good-shapes", "--adapter", "qlora", "--base_model", "QUANT"],
        "is already quantized (awq): --adapter qlora needs its unquantized weights",
    ),
    (
        "unreachable hub model",
        ["--dataset_name", "good-shapes", "--base_model", "llava-hf/llava-1.5-7b-hf"],
        "cannot read base model 'llava-hf/llava-1.5-7b-hf'",
    ),
]
PRE_RUN = {"bad deepspeed", "bad output name"}


@pytest.mark.e2e
@pytest.mark.parametrize("why,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_before_training(e2e, bad, why, args, message, tmp_path):
    base = bad["base"]
    if "PHI3" in args:  # a local folder that claims to be Phi-3-Vision
        (tmp_path / "config.json").write_text('{"model_type": "phi3_v"}')
        args = [a if a != "PHI3" else str(tmp_path) for a in args]
        base = None
    if "QUANT" in args:  # a local LLaVA folder whose weights are already AWQ-quantized
        (tmp_path / "config.json").write_text('{"model_type": "llava", "quantization_config": {"quant_method": "awq"}}')
        args = [a if a != "QUANT" else str(tmp_path) for a in args]
        base = None
    argv = ["workflow", "run", "vlm-finetune", "--output_model_name", "never-registered", *args]
    if base and "--base_model" not in args:
        argv += ["--base_model", base]
    runs_before = e2e.json("workflow", "runs", "vlm-finetune", "-n", "1000")
    res = e2e.mix(*argv, env={"HF_HUB_OFFLINE": "1"}, check=1)
    assert message in res.stdout + res.stderr, res.stdout[-3000:] + res.stderr
    runs_after = e2e.json("workflow", "runs", "vlm-finetune", "-n", "1000")
    if why in PRE_RUN:
        assert runs_after == runs_before, "refused before a run existed"
    else:
        assert len(runs_after) == len(runs_before) + 1
        run = runs_after[0]
        assert run["status"] == "failed", run
        assert message in (run["error"] or ""), run["error"]
        assert "Starting trainer" not in e2e.run_log(number=run["number"])  # failed before any training
    assert all(m["name"] != "never-registered" for m in e2e.json("model", "list"))


@pytest.mark.e2e
def test_skip_policy_drops_bad_rows_and_dry_run_stops(e2e, bad):
    res = e2e.mix(
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "mixed",
        "--output_model_name",
        "dry",
        "--base_model",
        bad["base"],
        "--on_bad_image",
        "skip",
        "--dry_run",
        "true",
        check=0,
    )
    assert "skipping 1 unusable rows" in res.stdout
    assert "axolotl config OK" in e2e.run_log() and "● dry run: 1 of 2 rows usable (1 unusable)" in res.stdout
    assert "● preflight: 1 rows through the processor" in res.stdout and "● memory estimate per process:" in res.stdout
    run_dir = Path(e2e.last_run()["run_dir"])
    assert "adapter: lora" in (run_dir / "axolotl.yml").read_text()
    report = json.loads((run_dir / "data_report.json").read_text())
    assert (
        report["rows_used"] == 1
        and report["preflight"]["tokens"]["max"] > report["preflight"]["image_tokens"]["max"] > 0
    )
    assert len(res.stdout.splitlines()) < 25
    assert e2e.last_run()["output"]["dry_run"] is True
    assert all(m["name"] != "dry" for m in e2e.json("model", "list"))


@prefetch.job("long_rows_runs", needs=("tiny_models",))
def _long_rows_runs(tmp) -> dict:
    """The three dry runs, in a home of their own (started early in the background, harness/prefetch.py)."""
    from mixtrain.testing.colour_task import make_task

    e2e = prefetch.mix(tmp.mktemp("long"))
    e2e.register_finetune()
    task = make_task(e2e.root / "long", n_train=4, n_test=1, size=448)
    e2e.mix("dataset", "create", "long-rows", "--file", task["train_csv"], check=0)
    args = [
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "long-rows",
        "--output_model_name",
        "long",
        "--base_model",
        prefetch.result("tiny_models", tmp)["qwen2_vl"],
        "--model_type",
        "qwen2_vl",
        "--max_seq_length",
        "64",
        "--dry_run",
        "true",
    ]
    short = e2e.mix(*args, check=0)  # the processor's default resolution: 16 image tokens, rows fit
    long = e2e.mix(*args, "--max_pixels", "100000", check=1)  # more pixels → 121 image tokens per image
    preflight = json.loads((Path(e2e.last_run()["run_dir"]) / "preflight.json").read_text())
    skip = e2e.mix(*args, "--max_pixels", "100000", "--on_long_row", "skip", check=1)
    return {"short": short, "long": long, "preflight": preflight, "skip": skip}


@pytest.fixture(scope="module")
def long_rows_runs(tmp_path_factory, tiny_models) -> dict:
    return prefetch.result("long_rows_runs", tmp_path_factory)


@pytest.mark.e2e
def test_rows_longer_than_max_seq_length_with_their_image_tokens(long_rows_runs):
    short, res = long_rows_runs["short"], long_rows_runs["long"]
    assert "image tokens 16/16/16" in short.stdout
    assert "image tokens 121/121/121" in res.stdout
    assert "4 rows are longer than --max_seq_length 64 with their image tokens: row 0 (" in res.stderr
    preflight = long_rows_runs["preflight"]
    assert [r["row"] for r in preflight["long_rows"]] == [0, 1, 2, 3] and all(
        r["tokens"] > 64 for r in preflight["long_rows"]
    )
    res = long_rows_runs["skip"]
    assert "every row is longer than --max_seq_length 64" in res.stderr


@pytest.mark.e2e
def test_response_pick_first_trains_the_first_answer(e2e, bad):
    res = e2e.mix(
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "list-response",
        "--output_model_name",
        "picked",
        "--base_model",
        bad["base"],
        "--response_pick",
        "first",
        "--dry_run",
        "true",
        check=0,
    )
    assert "● dry run: 2 of 2 rows usable" in res.stdout
    lines = (Path(e2e.last_run()["run_dir"]) / "train.jsonl").read_text().splitlines()
    answers = [json.loads(x)["messages"][1]["content"] for x in lines]
    assert answers == [[{"type": "text", "text": "red"}]] * 2
