"""The gate every newer family passes on its tiny random build, through the real CLI and real Axolotl:

prepare → preflight (image tokens = the processor's) → training → registration → `model run` →
`model serve` (greedy answer = `model run`) → `eval` → `model export --merged` (same greedy answer).

Each family trains once (session fixture, one after the other); every check below reuses it. Serving is
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
from e2e_helpers import REPO, Env, colour_dataset

# Families proven end to end here (the original four are gated by test_finetune_families.py), with the token
# that closes an assistant turn in each (it must carry loss, or the model never learns to stop) and the
# prefix of its language model's modules (what the LoRA target must cover, and nothing outside it).
GATED = ("qwen3_vl", "gemma3", "mllama", "smolvlm", "internvl", "mistral3", "pixtral")
CLOSE = {
    "qwen3_vl": "<|im_end|>",
    "gemma3": "<end_of_turn>",
    "mllama": "<|eot_id|>",
    "smolvlm": "<end_of_utterance>",
    "internvl": "<|im_end|>",
}
LANGUAGE_MODEL = dict.fromkeys(GATED, "model.language_model.") | {"smolvlm": "model.text_model."}
# Image tokens in the text for the gate's 64x64 image: Qwen3-VL 2x2 merged 16-px patches; Gemma 3 its pooled
# soft tokens (not the begin-of-image marker); Llama 3.2 Vision one <|image|> (features enter by cross-attention).
# Pixtral: 4x4 [IMG] rows, each closed by [IMG_BREAK] / [IMG_END]; Mistral 3 merges 2x2 patches first.
# InternVL: 4 tiles + a thumbnail, 4 <IMG_CONTEXT> each, inside <img> … </img>.
# SmolVLM2: 2x2 tiles + a global view, 4 <image> tokens each, each tile framed by its own marker tokens.
IMAGE_TOKENS = {"qwen3_vl": 4, "gemma3": 4, "mllama": 1, "smolvlm": 20, "internvl": 22, "mistral3": 6, "pixtral": 20}
PROMPT = "What colour is the shape?"
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
def newer_models(tmp_path_factory) -> dict[str, Path]:
    """Every gated family's tiny random build, made once in one process."""
    root = tmp_path_factory.mktemp("newer")
    t0 = time.monotonic()
    code = (
        "import sys\nfrom mixtrain.testing.tiny_vlm import build_tiny_vlm\n"
        "for fam in sys.argv[2:]:\n    build_tiny_vlm(fam, f'{sys.argv[1]}/{fam}')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(root), *GATED], check=True, timeout=600)
    print(f"\n[gate] build {len(GATED)} tiny models: {time.monotonic() - t0:.1f}s")
    return {f: root / f for f in GATED}


@pytest.fixture(scope="session")
def gate(tmp_path_factory, newer_models) -> dict:
    """Train, register, run, export: each family once. Failures are recorded per family, not raised."""
    root = tmp_path_factory.mktemp("gate")
    env = Env(root)
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
    for fam in GATED:
        rec: dict = {"base": newer_models[fam]}
        out["families"][fam] = rec
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
            rec["base"],
            "--model_type",
            fam,
            *TRAIN,
        )
        seconds[fam]["train"] = time.monotonic() - t
        rec["train_rc"], rec["train_out"] = proc.returncode, proc.stdout[-4000:] + proc.stderr[-2000:]
        rec["log"] = env.run_log()
        if proc.returncode:
            continue
        rec["info"] = env.json("model", "get", f"gate-{_name(fam)}")
    # `model run` and `model export --merged` through the SDK calls those commands make, every family in one
    # process (one interpreter start instead of two per family).
    trained = [f for f in GATED if out["families"][f]["train_rc"] == 0]
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", RUN_AND_EXPORT, str(image), PROMPT, json.dumps(GEN), str(root / "merged")]
        + [f"gate-{_name(f)}" for f in trained],
        capture_output=True,
        text=True,
        env=env.env,
        timeout=1200,
    )
    print(f"[gate] run + merged export of {len(trained)} families in one process: {time.monotonic() - t:.1f}s")
    for fam in trained:
        rec = out["families"][fam]
        path = root / "merged" / f"gate-{_name(fam)}.json"
        rec.update(json.loads(path.read_text()) if path.is_file() else {"error": proc.stderr[-3000:]})
        if "merged" in rec:
            env.mix(
                "model", "register", f"merged-{_name(fam)}", "--base_model", rec["merged"], "--model_type", fam, check=0
            )
    for fam, s in seconds.items():
        print(f"[gate] {fam}: " + ", ".join(f"{k} {v:.1f}s" for k, v in s.items()))
    return out


@pytest.fixture(scope="session")
def served(gate) -> dict:
    """One `model serve` for every trained adapter and merged export; each answers the gate's question once."""
    sys.path.insert(0, str(REPO / "tests" / "serve"))
    from serve_helpers import Server, data_url

    env: Env = gate["env"]
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


@pytest.fixture(scope="session")
def evaluated(gate) -> dict:
    """One eval over every trained family's model on the colour task's held-out rows."""
    env: Env = gate["env"]
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


# ------------------------------------------------------------------------------------------------ no training


@pytest.fixture(scope="session")
def labels(newer_models, tmp_path_factory) -> dict:
    """Axolotl's own labels for one prepared row of every family (one Axolotl import for all)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("labels")
    Image.new("RGB", (80, 48), (200, 30, 30)).save(root / "red.png")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("family_labels.py")), str(root / "red.png"), str(root)]
        + [f"{f}={p}" for f, p in newer_models.items()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"[gate] labels of {len(newer_models)} families: {time.monotonic() - t0:.1f}s")
    out = {}
    for path in root.glob("*.labels.json"):
        rec = json.loads(path.read_text())
        out[rec["family"]] = rec
    assert out, (proc.stdout[-2000:], proc.stderr[-3000:])
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_only_the_answer_and_its_closing_token_carry_loss(labels, family):
    assert family in labels, sorted(labels)
    rec = labels[family]
    assert "error" not in rec, rec.get("error")
    assert rec["trained_text"].strip() == "red circle" + CLOSE[family], (rec["strategy"], rec["row_text"])


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_lora_target_covers_the_language_model_and_nothing_else(newer_models, family):
    """PEFT itself applies the family's target: every Linear of the language model gets LoRA, nothing else."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from mixtrain.vlm.families import get_family

    model = AutoModelForImageTextToText.from_pretrained(newer_models[family], dtype=torch.float32)
    linears = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    wanted = {n for n in linears if n.startswith(LANGUAGE_MODEL[family])}
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=get_family(family).lora_target))
    hit = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert wanted and hit == wanted, (sorted(wanted - hit), sorted(hit - wanted))


@pytest.mark.e2e
def test_rows_whose_image_got_no_tokens_fail_the_preflight(newer_models):
    """The old Pixtral mistake: a template writing <image> for a processor that expands [IMG] gives 0 image
    tokens — the preflight (what a dry run runs) must refuse, not report "0/0/0" and say OK."""
    from transformers import AutoProcessor

    from mixtrain.vlm import configure, measure
    from mixtrain.vlm.prepare import to_messages

    image = Path(newer_models["pixtral"]) / "probe.png"
    _image_of(image)
    rows = [to_messages(str(image), PROMPT, "red")] * 2
    proc = AutoProcessor.from_pretrained(newer_models["pixtral"], use_fast=False)
    wrong = measure.measure(proc, (configure.TEMPLATES / "llava_mistral.jinja").read_text(), rows, workers=1)
    assert wrong.image_tokens == [0, 0] and wrong.images == [
        1,
        1,
    ]  # what the preflight refuses (rows with images, 0 tokens)
    right = measure.measure(proc, None, rows, workers=1)  # the pixtral family's template: the model's own
    assert right.image_tokens == [IMAGE_TOKENS["pixtral"]] * 2 and right.per_image == [IMAGE_TOKENS["pixtral"]] * 2


def _image_of(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
