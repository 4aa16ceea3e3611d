"""Conversations and several images per row, end to end: dataset create → dry run (real token counts)
→ a short real training → the labels Axolotl's own collator builds from the prepared file.

Two trainings, once each: (a) a multi-turn LLaVA-Instruct JSON array (images at their ``<image>``
placeholders) on tiny LLaVA; (b) a two-image Hugging Face Parquet (`datasets`, ``Sequence(Image())``) on
tiny Qwen2-VL. Then (a) once more, 2 steps, after its sources are deleted or repainted: the same losses.
The labels check is what catches a fine-tune that trains the prompt (Axolotl's generic strategy for
LLaVA does unless role boundaries are set) or drops a turn: exactly every assistant answer and its
closing token carry loss, nothing else.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import prefetch
from mixtrain.testing.colour_task import make_task

# Axolotl's processing strategy and multimodal collator, built with the arguments its trainer builder
# passes (axolotl/core/builders/causal.py), run on the prepared training file; prints, per row, the
# labelled spans decoded and the assistant answers of the row.
LABELS = """
import json, sys, yaml
from transformers import AutoProcessor
from axolotl.processing_strategies import get_processing_strategy
from axolotl.utils.collators.mm_chat import MultiModalChatDataCollator
from mixtrain.vlm.axolotl_main import load, resolve_role_boundaries
run_dir = sys.argv[1]
cfg = load(run_dir + '/axolotl.yml')
if cfg.get('role_boundaries'):
    cfg.role_boundaries = resolve_role_boundaries(cfg)
raw = yaml.safe_load(open(run_dir + '/axolotl.yml'))
proc = AutoProcessor.from_pretrained(cfg.base_model, **(raw.get('processor_kwargs') or {}))
st = get_processing_strategy(
    proc, raw.get('chat_template_jinja'), cfg.chat_template, image_size=cfg.image_size,
    train_on_inputs=bool(cfg.train_on_inputs),
    role_boundaries_override=list(cfg.role_boundaries) if cfg.get('role_boundaries') else None,
    field_messages=['messages'], model_type=cfg.model_config_type,
)
collate = MultiModalChatDataCollator(tokenizer=proc.tokenizer, processing_strategy=st)
image_id = getattr(proc, 'image_token_id', None)
if image_id is None:
    image_id = proc.tokenizer.convert_tokens_to_ids(proc.image_token)
out = []
for line in open(run_dir + '/train.jsonl'):
    row = json.loads(line)
    batch = collate([row])
    labels = batch['labels'][0].tolist()
    ids = batch['input_ids'][0].tolist()
    spans, cur = [], []
    for t, l in zip(ids, labels):
        if l != -100:
            cur.append(t)
        elif cur:
            spans.append(cur); cur = []
    if cur:
        spans.append(cur)
    answers = [''.join(p['text'] for p in m['content'] if p['type'] == 'text') for m in row['messages'] if m['role'] == 'assistant']
    out.append({'spans': [proc.tokenizer.decode(s) for s in spans], 'answers': answers,
                'eos': proc.tokenizer.eos_token, 'image_tokens': ids.count(image_id)})
print('LABELS ' + json.dumps(out))
"""


def labelled_spans(e2e, run_dir: Path) -> list[dict]:
    res = subprocess.run(
        [sys.executable, "-c", LABELS, str(run_dir)], capture_output=True, text=True, env=e2e.env, timeout=600
    )
    line = next((x for x in res.stdout.splitlines() if x.startswith("LABELS ")), None)
    assert line, res.stdout[-2000:] + res.stderr[-4000:]
    return json.loads(line[len("LABELS ") :])


def _task(e2e, name: str, n: int) -> list[dict]:
    info = make_task(e2e.root / f"task-{name}", n_train=n, n_test=2, size=64)
    with open(info["train_csv"]) as fh:
        return list(csv.DictReader(fh))


def _run(e2e, tiny_models, family: str, dataset: str, *extra: str, check=0):
    args = ["workflow", "run", "vlm-finetune", "--dataset_name", dataset, "--output_model_name", dataset]
    args += ["--base_model", str(tiny_models[family]), "--model_type", family, "--batch_size", "2"]
    args += ["--gradient_accumulation_steps", "1", "--lora_r", "8", "--lora_alpha", "16", *extra]
    return e2e.mix(*args, check=check)


def _llava_conversations(e2e, tiny_models):
    """(a) LLaVA-Instruct as it is downloaded: a JSON array (``.json``), ``image`` relative to an image
    folder (``--image_root``), multi-turn ``conversations`` lists with ``<image>``. The same rows as JSONL
    (absolute paths) get the dry run; the training reads the JSON array."""
    rows = _task(e2e, "conv", 6)
    records = []
    for i, r in enumerate(rows):
        turns = [
            {"from": "human", "value": f"<image>\n{r['prompt']}"},
            {"from": "gpt", "value": r["response"]},
            {"from": "human", "value": "Are you sure?"},
            {"from": "gpt", "value": f"yes, {r['response']}" if i % 2 else f"I am sure: {r['response']}"},
        ]
        records.append({"id": str(i), "image": Path(r["image_path"]).name, "conversations": turns})
    array = e2e.root / "llava_conv.json"
    array.write_text(json.dumps(records, indent=2))
    jsonl = e2e.root / "llava_conv.jsonl"
    jsonl.write_text(
        "".join(json.dumps({**x, "image": r["image_path"]}) + "\n" for x, r in zip(records, rows, strict=True))
    )
    images = Path(rows[0]["image_path"]).parent
    e2e.mix("dataset", "create", "conv", "--file", array, "--image_root", images, check=0)
    e2e.mix("dataset", "create", "conv-jsonl", "--file", jsonl, check=0)
    dry = _run(e2e, tiny_models, "llava", "conv-jsonl", "--image_column", "image", "--dry_run", "true")
    dry_dir = Path(e2e.last_run()["run_dir"])
    trained = _run(e2e, tiny_models, "llava", "conv", "--image_column", "image", "--max_steps", "2")
    return {
        "dry": dry,
        "dry_dir": dry_dir,
        "train": trained,
        "run": e2e.last_run(),
        "rows": rows,
        "sources": [array, jsonl, images],
    }


# Runs in a child process: this file is built by a background job (harness/prefetch.py), and `datasets`
# peeks at sys.modules["transformers"] while pickling — a foreground test importing transformers in the
# same process at that moment hands it a half-initialised module.
_PAIRS_WRITER = """
import json, sys
from pathlib import Path
import datasets

spec = json.loads(sys.argv[1])
def image(p):
    return {"bytes": Path(p).read_bytes(), "path": Path(p).name}
features = datasets.Features({
    "images": datasets.Sequence(datasets.Image()),
    "prompt": datasets.Value("string"),
    "response": datasets.Value("string"),
})
rows = spec["rows"]
ds = datasets.Dataset.from_dict({
    "images": [[image(a), image(b)] for a, b, _ in rows],
    "prompt": ["First: <image> Second: <image> What are the two colours?"] * len(rows),
    "response": [r for _, _, r in rows],
}, features=features)
ds.to_parquet(spec["path"])
"""


def _two_images(e2e, tiny_models):
    """(b) Two images per row in a Hugging Face Parquet: written by `datasets` with a ``Sequence(Image())``
    column holding the image bytes (the Hub's shape), the prompt placing them; Qwen2-VL."""
    rows = _task(e2e, "pairs", 8)
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)] * 2
    path = e2e.root / "pairs.parquet"
    spec = {
        "path": str(path),
        "rows": [[a["image_path"], b["image_path"], f"{a['response']} and {b['response']}"] for a, b in pairs],
    }
    subprocess.run([sys.executable, "-c", _PAIRS_WRITER, json.dumps(spec)], check=True, env=prefetch.environ())
    e2e.mix("dataset", "create", "pairs", "--file", path, check=0)
    dry = _run(e2e, tiny_models, "qwen2_vl", "pairs", "--image_column", "images", "--dry_run", "true")
    dry_dir = Path(e2e.last_run()["run_dir"])
    trained = _run(e2e, tiny_models, "qwen2_vl", "pairs", "--image_column", "images", "--max_steps", "2")
    return {"dry": dry, "dry_dir": dry_dir, "train": trained, "run": e2e.last_run(), "pairs": pairs}


@prefetch.job("conversations_home", needs=("tiny_models",))
def _conversations_home(tmp) -> dict:
    """The module's home with both trainings done (a) then (b) — started early in the background when these
    tests are selected (harness/prefetch.py)."""
    e2e = prefetch.mix(tmp.mktemp("conversations"))
    e2e.register_finetune()
    tiny_models = prefetch.result("tiny_models", tmp)
    return {"env": e2e, "llava": _llava_conversations(e2e, tiny_models), "pairs": _two_images(e2e, tiny_models)}


@pytest.fixture(scope="module")
def conversations_home(tmp_path_factory, tiny_models) -> dict:
    return prefetch.result("conversations_home", tmp_path_factory)


@pytest.fixture(scope="module")
def e2e(conversations_home):
    """This module's home: the one both trainings ran in."""
    return conversations_home["env"]


@pytest.fixture(scope="module")
def llava_conversations(conversations_home) -> dict:
    return conversations_home["llava"]


@pytest.fixture(scope="module")
def two_images(conversations_home) -> dict:
    return conversations_home["pairs"]


@pytest.mark.e2e
def test_llava_multi_turn_conversations_train_on_every_answer_and_nothing_else(e2e, llava_conversations):
    got = llava_conversations
    assert "training on the conversations in column 'conversations'" in got["dry"].stdout
    report = json.loads((got["dry_dir"] / "data_report.json").read_text())["preflight"]
    assert report["images_per_row"] == {"min": 1, "median": 1, "max": 1}
    assert report["image_tokens"]["min"] > 0 and report["tokens"]["min"] > report["image_tokens"]["max"]
    assert f"tokens min/median/max {report['tokens']['min']}/" in got["dry"].stdout

    run = got["run"]
    assert run["status"] == "completed" and run["output"]["model"] == "conv", run
    run_dir = Path(run["run_dir"])
    lines = [json.loads(x) for x in (run_dir / "train.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(len(x["messages"]) == 4 for x in lines)  # every turn kept
    first = lines[0]["messages"][0]["content"]
    assert first[0]["type"] == "image" and first[1] == {"type": "text", "text": got["rows"][0]["prompt"]}

    rows = labelled_spans(e2e, run_dir)
    assert len(rows) == 6
    for r in rows:
        assert len(r["answers"]) == 2 and r["image_tokens"] > 0
        # exactly the two answers, each with its EOS, are labelled: no prompt, no "ASSISTANT:", no image
        assert [s.strip() for s in r["spans"]] == [f"{a}{r['eos']}" for a in r["answers"]], r


@pytest.mark.e2e
def test_two_image_rows_count_tokens_per_image_and_train_on_the_answer(e2e, two_images):
    got = two_images
    report = json.loads((got["dry_dir"] / "data_report.json").read_text())["preflight"]
    assert report["images_per_row"] == {"min": 2, "median": 2, "max": 2}
    per_image = report["image_tokens_per_image"]
    assert per_image["min"] > 0 and report["image_tokens"]["max"] == 2 * per_image["max"]  # 64-px images alike
    assert f"(per image {per_image['min']}/{per_image['median']}/{per_image['max']}, 2 images in a row at most)" in (
        got["dry"].stdout
    )

    run = got["run"]
    assert run["status"] == "completed" and run["output"]["model"] == "pairs", run
    run_dir = Path(run["run_dir"])
    example = json.loads((run_dir / "train.jsonl").read_text().splitlines()[0])
    kinds = [p["type"] for p in example["messages"][0]["content"]]
    assert kinds == ["text", "image", "text", "image", "text"]  # each image where its <image> stood
    rows = labelled_spans(e2e, run_dir)
    for r, (a, b) in zip(rows, got["pairs"], strict=True):
        assert r["image_tokens"] == 2 * per_image["max"]  # what the preflight counted, in the training batch
        assert r["answers"] == [f"{a['response']} and {b['response']}"]
        assert [s.strip() for s in r["spans"]] == [f"{r['answers'][0]}<|im_end|>"], r


@pytest.mark.e2e
def test_csv_prompt_starting_with_image_placeholder_is_its_position(e2e, tiny_models):
    rows = _task(e2e, "placeholder", 2)
    path = e2e.root / "placeholder.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "prompt", "response"])
        w.writerows((r["image_path"], f"<image>\n{r['prompt']}", r["response"]) for r in rows)
    e2e.mix("dataset", "create", "placeholder", "--file", path, check=0)
    res = _run(e2e, tiny_models, "llava", "placeholder", "--dry_run", "true")
    assert "StopIteration" not in res.stdout + res.stderr and "● dry run: 2 of 2 rows usable" in res.stdout
    run_dir = Path(e2e.last_run()["run_dir"])
    line = json.loads((run_dir / "train.jsonl").read_text().splitlines()[0])
    image, text = line["messages"][0]["content"]
    assert text == {"type": "text", "text": rows[0]["prompt"]} and image["type"] == "image"
    assert Path(image["path"]).read_bytes() == Path(rows[0]["image_path"]).read_bytes()  # the stored copy


@pytest.mark.e2e
def test_two_image_model_run_and_eval_with_list_references(e2e, two_images):
    """`model run --inputs '{"images": [...]}'` answers a two-image prompt; `eval create` asks the same rows
    with both images (its greedy output equals model run's) and scores a list of references (vqa)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gen = '{"max_new_tokens": 5, "temperature": 0}'
    prompt = "First: <image> Second: <image> What are the two colours?"
    pairs = got_pairs = two_images["pairs"][:2]
    outputs = []
    for a, b in got_pairs:
        res = e2e.mix(
            "model",
            "run",
            "pairs",
            "--inputs",
            json.dumps({"images": [a["image_path"], b["image_path"]], "prompt": prompt}),
            "--config",
            gen,
            "--json",
            check=0,
        )
        outputs.append(json.loads(res.stdout)["generated_text"])
    # row 0: the model's own answer given by 3 of 10 annotators (vqa 1.0); row 1: by 1 of 10 (vqa 1/3)
    refs = [[outputs[0]] * 3 + ["zzz"] * 7, [outputs[1]] + ["zzz"] * 9]
    path = e2e.root / "pairs_eval.parquet"
    pq.write_table(
        pa.table(
            {
                "image_path": [[a["image_path"], b["image_path"]] for a, b in pairs],
                "prompt": [prompt] * 2,
                "answers": refs,
            }
        ),
        path,
    )
    e2e.mix("dataset", "create", "pairs-eval", "--file", path, check=0)
    e2e.mix(
        "eval",
        "create",
        "pe",
        "--dataset",
        "pairs-eval",
        "--models",
        "pairs",
        "--metric",
        "vqa",
        "--reference_column",
        "answers",
        "--config",
        gen,
        check=0,
    )
    rec = e2e.json("eval", "get", "pe")
    assert rec["status"] == "completed", rec["error"]
    results = e2e.json("eval", "results", "pe", "--limit", "10")
    label = rec["models"][0]["label"]
    assert [r[f"{label}__output"] for r in results] == outputs  # both images asked, as model run asks them
    if outputs[0] != outputs[1]:
        assert [r[f"{label}__score"] for r in results] == [1.0, pytest.approx(1 / 3)]
    assert json.loads(results[0]["reference"]) == refs[0]
    assert [len(r["images"]) for r in results] == [2, 2]


@pytest.mark.e2e
def test_preflight_finds_rows_whose_images_get_no_image_tokens(tmp_path, tiny_models):
    """A chat template that drops the image placeholder (as a mis-detected family's does): the row has an
    image, the processor gives it 0 image tokens, and the preflight names that line."""
    from PIL import Image
    from transformers import AutoProcessor

    from mixtrain.vlm.configure import TEMPLATES
    from mixtrain.vlm.measure import measure
    from mixtrain.vlm.preflight import blind_lines
    from mixtrain.vlm.prepare import to_messages

    Image.new("RGB", (64, 64), "red").save(tmp_path / "r.png")
    rows = [to_messages(str(tmp_path / "r.png"), "colour?", "red")] * 2
    proc = AutoProcessor.from_pretrained(tiny_models["llava"], use_fast=False)
    blind = "{% for m in messages %}{% for p in m['content'] if p['type'] == 'text' %}{{ p['text'] }} {% endfor %}{% endfor %}"
    m = measure(proc, blind, rows, workers=1)
    assert m.images == [1, 1] and m.image_tokens == [0, 0] and blind_lines(m) == [0, 1]
    ok = measure(proc, (TEMPLATES / "llava.jinja").read_text(), rows, workers=1)  # ours places the image
    assert min(ok.image_tokens) > 0 and ok.per_image == ok.image_tokens and blind_lines(ok) == []


@pytest.mark.e2e
def test_a_rerun_after_the_sources_are_gone_trains_the_same_steps(e2e, tiny_models, llava_conversations):
    """A snapshot is self-contained: with the JSON file deleted and every source image repainted or deleted,
    the same fine-tune (same seed) on the same snapshot trains exactly the same loss series."""
    from PIL import Image

    got = llava_conversations
    array, jsonl, images = got["sources"]
    array.unlink()
    jsonl.unlink()
    for i, path in enumerate(sorted(images.glob("train_*.png"))):
        if i % 2:
            path.unlink()
        else:
            Image.new("RGB", (64, 64), "magenta").save(path)  # same name, other pixels
    first = got["run"]
    args = ["workflow", "run", "vlm-finetune", "--dataset_name", "conv", "--output_model_name", "conv-again"]
    args += ["--base_model", str(tiny_models["llava"]), "--model_type", "llava", "--batch_size", "2"]
    args += ["--gradient_accumulation_steps", "1", "--lora_r", "8", "--lora_alpha", "16"]
    e2e.mix(*args, "--image_column", "image", "--max_steps", "2", check=0)
    again = e2e.last_run()
    assert again["status"] == "completed", again
    assert again["output"]["dataset_snapshot_id"] == first["output"]["dataset_snapshot_id"]
    assert first["output"]["dataset_snapshot_id"] == e2e.json("dataset", "get", "conv")["version"]

    def losses(run: dict) -> list[tuple[int, float]]:
        rows = e2e.json("workflow", "metrics", "vlm-finetune", str(run["number"]))
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]

    assert len(losses(first)) == 2 and losses(again) == losses(first)
