"""The gate every newer family passes on its tiny random build, through the real CLI and real Axolotl:

prepare → preflight (image tokens = the processor's) → training → registration → `model run` →
`model serve` (greedy answer = `model run`) → `eval` → `model export --merged` (same greedy answer).

Each family trains once (session fixture, two at a time); every check below reuses it. Serving is
batched: one server holds every trained adapter and every merged export. The per-family costs are
printed (`-s`) so the suite's budget can be watched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_family_checks import GATED, IMAGE_TOKENS, PROMPT

from harness import REPO, Mix, colour_dataset, prefetch
from harness.parallel import run_all, run_number

GEN = {"max_new_tokens": 4}
TRAIN = ["--max_steps", "2", "--batch_size", "2", "--gradient_accumulation_steps", "1"]
TRAIN += ["--learning_rate", "0.001", "--lora_r", "8", "--max_seq_length", "1024"]


RUN_AND_EXPORT = r"""
import json, sys
from pathlib import Path
from mixtrain.client import MixClient, get_model
from mixtrain.models.inference import export_merged
image, prompt, gen, root = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])
root.mkdir(parents=True, exist_ok=True)
client = MixClient()
for name in sys.argv[5:]:
    rec = {}
    try:
        rec["answer"] = get_model(name, client=client).run({"image": image, "prompt": prompt}, **gen)["generated_text"]
        export_merged(client.get_model_info(name), client.settings, root / name)
        rec["merged"] = str(root / name)
    except Exception as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
    (root / f"{name}.json").write_text(json.dumps(rec))
"""


def _name(family: str) -> str:
    return family.replace("_", "-")


@pytest.fixture(scope="session")
def gate(tmp_path_factory, newer_models) -> dict:
    """Train, register, run, export: each family once. Failures are recorded per family, not raised."""
    return prefetch.result("gate", tmp_path_factory)


@pytest.fixture(scope="session")
def served(gate, tmp_path_factory) -> dict:
    return prefetch.result("served", tmp_path_factory)


@pytest.fixture(scope="session")
def evaluated(gate, tmp_path_factory) -> dict:
    return prefetch.result("evaluated", tmp_path_factory)


# The work of those fixtures, started early in the background when selected tests need it (harness/prefetch.py).
@prefetch.job("gate", needs=("newer_models",))
def _gate(tmp) -> dict:
    newer_models = prefetch.result("newer_models", tmp)
    root = tmp.mktemp("gate")
    env = prefetch.mix(root)
    seconds: dict[str, dict[str, float]] = {f: {} for f in GATED}
    env.mix(
        "workflow",
        "create",
        "axolotl_vlm_finetune.py",
        "--name",
        "vlm-finetune",
        cwd=REPO / "src/mixtrain/examples",
        check=0,
    )
    colour_dataset(env, "gate-shapes", n=8)
    image = sorted((root / "task-gate-shapes" / "images").glob("test_*.png"))[0]
    out: dict = {"env": env, "image": image, "families": {}, "seconds": seconds}

    def train(fam: str):
        t = time.monotonic()
        proc = env.mix(
            "workflow",
            "run",
            "vlm-finetune",
            "--dataset_name",
            "gate-shapes",
            "--output_model_name",
            f"gate-{_name(fam)}",
            "--base_model",
            newer_models[fam],
            "--model_type",
            fam,
            *TRAIN,
        )
        seconds[fam]["train"] = time.monotonic() - t
        return proc

    # The families train two at a time (independent runs in one home); each run is read by its own number.
    for fam, proc in zip(GATED, run_all([lambda f=f: train(f) for f in GATED]), strict=True):
        rec: dict = {"base": newer_models[fam]}
        out["families"][fam] = rec
        rec["train_rc"], rec["train_out"] = proc.returncode, proc.stdout[-4000:] + proc.stderr[-2000:]
        if proc.returncode:
            continue
        rec["log"] = env.run_log(number=run_number(proc.stdout))
        rec["info"] = env.json("model", "get", f"gate-{_name(fam)}")
    # `model run` and `model export --merged` through the SDK calls those commands make, several families in
    # one process (one interpreter start instead of two per family), two such processes at a time.
    trained = [f for f in GATED if out["families"][f]["train_rc"] == 0]
    halves = [h for h in (trained[0::2], trained[1::2]) if h]
    t = time.monotonic()

    def run_and_export(fams: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", RUN_AND_EXPORT, str(image), PROMPT, json.dumps(GEN), str(root / "merged")]
            + [f"gate-{_name(f)}" for f in fams],
            capture_output=True,
            text=True,
            env=env.env,
            timeout=1200,
        )

    procs = run_all([lambda h=h: run_and_export(h) for h in halves])
    proc_of = {f: p for h, p in zip(halves, procs, strict=True) for f in h}
    print(f"[gate] run + merged export of {len(trained)} families in two processes: {time.monotonic() - t:.1f}s")
    for fam in trained:
        rec = out["families"][fam]
        path = root / "merged" / f"gate-{_name(fam)}.json"
        rec.update(json.loads(path.read_text()) if path.is_file() else {"error": proc_of[fam].stderr[-3000:]})
        if "merged" in rec:
            env.mix(
                "model", "register", f"merged-{_name(fam)}", "--base_model", rec["merged"], "--model_type", fam, check=0
            )
    for fam, s in seconds.items():
        print(f"[gate] {fam}: " + ", ".join(f"{k} {v:.1f}s" for k, v in s.items()))
    return out


@prefetch.job("served", needs=("gate",))
def _served(tmp) -> dict:
    """One `model serve` for every trained adapter and merged export; each answers the gate's question once."""
    from harness.serve import Server, data_url

    gate = prefetch.result("gate", tmp)
    env: Mix = gate["env"]
    names = [f"gate-{_name(f)}" for f, r in gate["families"].items() if "answer" in r]
    names += [f"merged-{_name(f)}" for f, r in gate["families"].items() if "merged" in r]
    if not names:
        return {}
    t = time.monotonic()
    server = Server(env.env, *names, log=env.root / "serve.log")
    try:
        import httpx

        url = data_url(Path(gate["image"]).read_bytes())
        answers = {}
        for name in names:
            body = {
                "model": name,
                "temperature": 0,
                "max_tokens": GEN["max_new_tokens"],
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": PROMPT}],
                    }
                ],
            }
            r = httpx.post(f"{server.url}/chat/completions", json=body, timeout=300)
            answers[name] = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else r.text
    finally:
        server.stop()
    print(f"[gate] one server, {len(names)} models: {time.monotonic() - t:.1f}s")
    return answers


@prefetch.job("evaluated", needs=("gate",))
def _evaluated(tmp) -> dict:
    """One eval over every trained family's model on the colour task's held-out rows."""
    gate = prefetch.result("gate", tmp)
    env: Mix = gate["env"]
    names = [f"gate-{_name(f)}" for f, r in gate["families"].items() if "answer" in r]
    if not names:
        return {}
    t = time.monotonic()
    env.mix(
        "eval",
        "create",
        "gate-eval",
        "--dataset",
        "gate-shapes",
        "--models",
        ",".join(names),
        "--metric",
        "contains",
        "--config",
        json.dumps(GEN),
        "--limit",
        "4",
        check=0,
    )
    print(f"[gate] one eval, {len(names)} models: {time.monotonic() - t:.1f}s")
    return env.json("eval", "get", "gate-eval")


def _trained(gate, family) -> dict:
    rec = gate["families"][family]
    assert rec["train_rc"] == 0, rec["train_out"]
    return rec


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_preflight_trains_and_registers(gate, family):
    rec = _trained(gate, family)
    log = rec["log"]
    # The preflight counted the image's own tokens on every row (the processor's count for one image).
    from transformers import AutoProcessor

    from mixtrain.vlm.families import get_family
    from mixtrain.vlm.measure import image_token_ids

    proc = AutoProcessor.from_pretrained(rec["base"], use_fast=False)
    batch = proc(
        text=[proc.apply_chat_template(_msgs(), add_generation_prompt=True, tokenize=False)],
        images=[_image(gate["image"])],
        return_mm_token_type_ids=True,
    )
    ids = [int(i) for i in batch["input_ids"][0]]
    per_image = sum(1 for i in ids if i in image_token_ids(proc))
    if "mm_token_type_ids" in batch:  # the processor's own marking of the image's tokens
        assert per_image == sum(1 for t in batch["mm_token_type_ids"][0] if int(t) == 1)
    assert per_image == IMAGE_TOKENS[family]
    assert f"image tokens {per_image}/{per_image}/{per_image}" in log, log[-3000:]
    # Only the answer and the turn's closing token carried loss (2 tokens a row here: "colour" + close).
    assert "'tokens/trainable':" in log
    info = rec["info"]
    assert info["model_type"] == family and info["version"] == 1
    assert info["lineage"]["global_step"] == 2 and info["lineage"]["dataset"]["rows_used"] == 8
    adapter = json.loads((Path(info["adapter_path"]) / "adapter_config.json").read_text())
    assert adapter["target_modules"] == get_family(family).lora_target


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_run_serve_and_merged_export_give_one_answer(gate, served, family):
    rec = _trained(gate, family)
    assert "error" not in rec, rec["error"]
    answer = rec["answer"]
    assert isinstance(answer, str)
    assert served[f"gate-{_name(family)}"] == answer
    assert (Path(rec["merged"]) / "model.safetensors").is_file()
    assert not (Path(rec["merged"]) / "adapter_config.json").exists()
    assert served[f"merged-{_name(family)}"] == answer


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_eval_scores_the_family(gate, evaluated, family):
    _trained(gate, family)
    assert evaluated["status"] == "completed", evaluated.get("error")
    score = evaluated["scores"][f"gate-{_name(family)}_v1"]
    assert score["n"] == 4 and score["failed"] == 0


def _msgs() -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]


def _image(path):
    from PIL import Image

    return Image.open(path).convert("RGB")
