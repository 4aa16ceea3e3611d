"""Real Axolotl LoRA training through the real CLI, for every family, then inference on the adapter.

The trainings are the session's shared ones (`families` in conftest.py): export and W&B checks reuse them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.trainings import FAMILY_CASES


@pytest.mark.e2e
@pytest.mark.parametrize("folder,model_type,family", FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
def test_family_trains_registers_and_answers(families, tiny_models, folder, model_type, family):
    trained = families[folder]
    e2e, dataset, model, snapshot = families.env, trained.dataset, trained.model, trained.snapshot
    log = trained.log
    assert "Single GPU mode - running without distributed setup" in log
    assert "mixtrain: training process rank 0 of 1 finished" in log
    assert "FlashAttention-2 needs a CUDA GPU" in log  # use_flash_attention defaults to true; CPU falls back
    if family != model_type:
        assert f"using the {family} handling" in log
    # Axolotl trained on the answer and its EOS only: 2 tokens per sample (× batch of 2).
    assert "'tokens/trainable': 4" in log, log[-3000:]

    info = e2e.json("model", "get", model)
    assert info["model_type"] == family and info["version"] == 1
    assert info["base_model"] == str(tiny_models[folder])
    lineage = info["lineage"]
    assert lineage["dataset"] == {"name": dataset, "snapshot_id": snapshot, "rows_used": 16}
    assert lineage["workflow_run"]["workflow"] == "vlm-finetune"
    assert lineage["params"]["lora_r"] == 8 and lineage["params"]["max_steps"] == 3
    assert lineage["global_step"] == 3
    assert set(lineage["versions"]) >= {"axolotl", "transformers", "peft", "torch", "mixtrain"}
    assert isinstance(info["train_loss"], float)
    out = Path(info["adapter_path"])
    assert out.is_relative_to(e2e.home / "axolotl_workspace" / "output" / model)
    for f in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
        "trainer_state.json",
    ):
        assert (out / f).is_file(), f
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert "language_model" in str(adapter_cfg["target_modules"])  # LM-only LoRA

    run_out = trained.run
    assert run_out["status"] == "completed" and run_out["output"]["model"] == model

    # Inference through the CLI, as the spec writes it.
    image = trained.test_image(e2e)
    res = e2e.mix(
        "model",
        "run",
        model,
        "--inputs",
        json.dumps({"image": str(image), "prompt": "What colour is the shape?"}),
        "--json",
        "--config",
        '{"max_new_tokens": 4}',
        check=0,
    )
    answer = json.loads(res.stdout)
    assert answer["model"] == model and answer["version"] == 1 and isinstance(answer["generated_text"], str)
    assert answer["latency_s"] > 0
