"""Training modes through the real CLI and real Axolotl (issue #19 §2), two 2-step trainings of the tiny LLaVA:

* ``--adapter qlora --train_vision lora``: the loaded model's language-model Linear layers really are
  bitsandbytes 4-bit (their quant state says NF4), the vision tower, projector and head are not; the
  tower's blocks carry LoRA and the projector trains in full (counted from the model the trainer got);
  it registers, `model run` answers, and the vLLM command line for it asks for tower/connector LoRA.
* ``--adapter full``: every language-model weight trains and nothing of the vision side; the registered
  version is the model's own weights (no adapter); `model run`, `model serve`, `eval` and
  `model export --merged` load them and agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import Mix, colour_dataset, prefetch

GEN = {"max_new_tokens": 4}
TRAIN = ["--max_steps", "2", "--batch_size", "2", "--gradient_accumulation_steps", "1", "--num_epochs", "1"]
TRAIN += ["--learning_rate", "0.001", "--max_seq_length", "512"]
PROMPT = "What colour is the shape?"


@prefetch.job("modes", needs=("tiny_models",))
def _modes(tmp) -> dict:
    """Both trainings in one home, started early in the background (harness/prefetch.py)."""
    env = prefetch.mix(tmp.mktemp("modes"))
    env.register_finetune()
    tiny_models = prefetch.result("tiny_models", tmp)
    colour_dataset(env, "modes-shapes", n=8)
    out: dict = {"env": env, "image": sorted((env.root / "task-modes-shapes" / "images").glob("test_*.png"))[0]}
    for name, args in (
        ("q4", ["--adapter", "qlora", "--train_vision", "lora", "--lora_r", "4"]),
        ("whole", ["--adapter", "full"]),
    ):
        t = time.monotonic()
        proc = env(
            "workflow",
            "run",
            "vlm-finetune",
            "--dataset_name",
            "modes-shapes",
            "--output_model_name",
            name,
            "--base_model",
            tiny_models["llava"],
            *TRAIN,
            *args,
        )
        print(f"[modes] {name}: {time.monotonic() - t:.1f}s")
        run = env.last_run()
        rec = {"rc": proc.returncode, "out": proc.stdout[-4000:] + proc.stderr[-3000:], "log": env.run_log()}
        if proc.returncode == 0:
            rec["info"] = env.json("model", "get", name)
            report = Path(run["run_dir"]) / "trained_parameters.json" if run.get("run_dir") else None
            rec["report"] = json.loads(report.read_text()) if report and report.is_file() else None
        out[name] = rec
    return out


@pytest.fixture(scope="module")
def modes(tmp_path_factory, tiny_models) -> dict:
    return prefetch.result("modes", tmp_path_factory)


def _ok(modes, name) -> dict:
    rec = modes[name]
    assert rec["rc"] == 0, rec["out"]
    return rec


def _run(env: Mix, name: str, image) -> str:
    res = env("model", "run", name, "--image", image, "--prompt", PROMPT, "--json", "--config", json.dumps(GEN))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(res.stdout)["generated_text"]


# The test's own map of each family's parts (module paths), independent of vlm/families.py.
PARTS = {
    "llava": {
        "language": "model.language_model",
        "tower": "model.vision_tower",
        "projector": ["model.multi_modal_projector"],
    },
    "qwen3_vl": {
        "language": "model.language_model",
        "tower": "model.visual",
        "projector": ["model.visual.merger", "model.visual.deepstack_merger_list"],
    },
    "smolvlm": {"language": "model.text_model", "tower": "model.vision_model", "projector": ["model.connector"]},
}


@prefetch.job("modes_counted", needs=("tiny_models", "newer_models"))
def _counted(tmp) -> dict:
    """Every family in PARTS × every mode, made trainable by Axolotl's own loaders (tests/e2e/modes_count.py);
    started early in the background (harness/prefetch.py)."""
    out = tmp.mktemp("counts") / "counts.json"
    bases = {**prefetch.result("tiny_models", tmp), **prefetch.result("newer_models", tmp)}
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("modes_count.py")), str(out), json.dumps(PARTS)]
        + [f"{f}={bases[f]}" for f in PARTS],
        capture_output=True,
        text=True,
        timeout=600,
        env=prefetch.environ(),
    )
    print(f"[modes] counts of {len(PARTS)} families × 7 modes: {time.monotonic() - t:.1f}s")
    return {"rc": proc.returncode, "stderr": proc.stderr[-4000:], "out": out}


@pytest.fixture(scope="module")
def counted(tiny_models, newer_models, tmp_path_factory) -> list[dict]:
    res = prefetch.result("modes_counted", tmp_path_factory)
    assert res["rc"] == 0 and res["out"].is_file(), res["stderr"]
    return json.loads(res["out"].read_text())


@pytest.mark.e2e
@pytest.mark.parametrize("family", sorted(PARTS))
def test_each_mode_trains_exactly_its_parameters(counted, family):
    """Trainable parameters per mode, from the model the training would get, equal the module tree's count."""
    rows = [r for r in counted if r["family"] == family]
    assert len(rows) == 7 and not [r for r in rows if "error" in r], [r.get("error") for r in rows]
    for r in rows:
        assert r["trainable"] == r["expected"], r
    n = {(r["adapter"], r["train_vision"]): r["trainable"] for r in rows}
    # Each mode moves the count the way it should.
    assert n[("lora", "none")] < n[("lora", "projector")] < n[("lora", "lora")] < n[("lora", "full")]
    assert n[("lora", "none")] < n[("full", "none")] < n[("full", "projector")] < n[("full", "full")]
    by = {(r["adapter"], r["train_vision"]): set(r["by_part"]) for r in rows}
    lm = PARTS[family]["language"]
    assert by[("lora", "none")] == {f"lora:{lm}"}  # the vision side frozen unless asked
    assert all(k.startswith("weights:") for k in by[("full", "none")])
    assert not [k for k in by[("full", "none")] if PARTS[family]["tower"] in k or "projector" in k or "connector" in k]


# -- QLoRA with LoRA on the vision tower too ------------------------------------------------------------------
@pytest.mark.e2e
def test_qlora_loads_the_language_model_in_4bit_and_leaves_the_vision_side_alone(modes, tiny_models):
    rec = _ok(modes, "q4")
    report = rec["report"]
    assert report, "the training process wrote no trained_parameters.json"
    four = report["linear4bit"]
    # Every Linear of the language model is a bitsandbytes Linear4bit holding NF4 data with its quant state;
    # nothing of the vision tower, the projector or the output head is.
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    with torch.device("meta"):
        bare = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(tiny_models["llava"]))
    lm_linear = {
        n for n, m in bare.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("model.language_model.")
    }
    quantized = {n.removesuffix(".base_layer") for n in four}  # under LoRA, PEFT's wrapper holds the 4-bit layer
    assert lm_linear and quantized == lm_linear, sorted(quantized ^ lm_linear)[:10]
    assert {q["quant_type"] for q in four.values()} == {"nf4"}
    assert all(q["shape"] for q in four.values())  # the quant state knows the unpacked shape
    # --train_vision lora: LoRA on the language model and on the tower's blocks, the projector in full.
    parts = report["trainable_by_part"]
    assert set(parts) == {
        "lora:model.language_model",
        "lora:model.vision_tower",
        "modules_to_save:model.multi_modal_projector",
    }
    training = rec["info"]["lineage"]["training"]
    assert (training["adapter"], training["train_vision"]) == ("qlora", "lora")
    assert training["trainable_params"] == report["trainable_params"] and training["linear4bit_layers"] == len(
        lm_linear
    )


@pytest.mark.e2e
def test_qlora_model_answers_and_is_served_with_its_tower_lora(modes):
    rec = _ok(modes, "q4")
    env = modes["env"]
    answer = _run(env, "q4", modes["image"])
    assert isinstance(answer, str)
    from mixtrain.models.weights import adapter_touches_vision
    from mixtrain.serving import pool, vllm

    adapter = rec["info"]["adapter_path"]
    assert adapter_touches_vision(adapter)  # the saved adapter really holds tower/projector weights
    cmd = vllm.vllm_command(pool.plan([rec["info"]]), "127.0.0.1", 8000, max_batch_size=4)
    assert "--enable-tower-connector-lora" in cmd and f"q4={adapter}" in cmd


# -- full fine-tuning ---------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_full_finetune_trains_the_language_model_only_and_registers_its_weights(modes, tiny_models):
    rec = _ok(modes, "whole")
    parts = rec["report"]["trainable_by_part"]
    assert set(parts) <= {"weights:model.language_model", "weights:lm_head"} and "weights:model.language_model" in parts
    assert rec["report"]["linear4bit"] == {}
    folder = Path(rec["info"]["adapter_path"])
    assert (folder / "model.safetensors").is_file() and not (folder / "adapter_config.json").exists()
    assert rec["info"]["lineage"]["training"]["adapter"] == "full"
    shown = modes["env"]("model", "get", "whole", check=0).stdout
    assert f"weights:      {folder}" in shown and "training:     --adapter full --train_vision none — " in shown
    # The stored weights: the language model changed, the vision tower and projector did not.
    from safetensors.torch import load_file

    base = load_file(tiny_models["llava"] / "model.safetensors")
    tuned = load_file(folder / "model.safetensors")
    common = [k for k in base if k in tuned]
    changed = {k for k in common if not base[k].equal(tuned[k].to(base[k].dtype))}
    vision = [k for k in common if "vision_tower" in k or "multi_modal_projector" in k]
    assert vision and changed, (sorted(base)[:5], sorted(tuned)[:5])  # a whole model, not a diff
    assert all("language_model" in k or "lm_head" in k for k in changed), sorted(changed)[:10]
    assert not changed & set(vision)


@pytest.mark.e2e
def test_full_weights_answer_the_same_through_run_serve_eval_and_export(modes, tmp_path):
    _ok(modes, "whole")
    env, image = modes["env"], modes["image"]
    answer = _run(env, "whole", image)
    # serve: the same greedy answer
    from harness.serve import Server, data_url

    server = Server(env.env, "whole", log=tmp_path / "serve.log")
    try:
        import httpx

        content = [{"type": "image_url", "image_url": {"url": data_url(Path(image).read_bytes())}}]
        body = {
            "model": "whole",
            "temperature": 0,
            "max_tokens": GEN["max_new_tokens"],
            "messages": [{"role": "user", "content": [*content, {"type": "text", "text": PROMPT}]}],
        }
        r = httpx.post(f"{server.url}/chat/completions", json=body, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == answer
    finally:
        server.stop()
    # eval loads the same weights
    env(
        "eval",
        "create",
        "whole-eval",
        "--dataset",
        "modes-shapes",
        "--models",
        "whole",
        "--metric",
        "contains",
        "--config",
        json.dumps(GEN),
        "--limit",
        "2",
        check=0,
    )
    ev = env.json("eval", "get", "whole-eval")
    assert ev["status"] == "completed", ev.get("error")
    assert ev["scores"]["whole_v1"]["n"] == 2 and ev["scores"]["whole_v1"]["failed"] == 0, ev["scores"]
    # export --merged: nothing to merge, the weights saved as a plain model that answers the same
    env("model", "export", "whole", "--merged", tmp_path / "exported", check=0)
    assert (tmp_path / "exported" / "model.safetensors").is_file()
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "exported" / "model.safetensors")
    registered = load_file(Path(env.json("model", "get", "whole")["adapter_path"]) / "model.safetensors")
    assert exported.keys() == registered.keys() and all(exported[k].equal(registered[k]) for k in exported)
    # vLLM serves the folder itself as the model (no LoRA flags)
    from mixtrain.serving import pool, vllm

    info = env.json("model", "get", "whole")
    cmd = vllm.vllm_command(pool.plan([info]), "127.0.0.1", 8000, max_batch_size=4)
    assert (
        cmd[2] == info["adapter_path"]
        and "--enable-lora" not in cmd
        and cmd[cmd.index("--served-model-name") + 1] == "whole"
    )
