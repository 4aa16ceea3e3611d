"""§1, the case that matters most: a fine-tune whose supervisor is SIGKILLed mid-training still
finishes, registers its model and leaves a complete adapter (real Axolotl, tiny LLaVA, CPU)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from harness import Mix, colour_dataset, finetune_args, gone, registry, wait_for


@pytest.mark.e2e
def test_finetune_registers_its_model_after_supervisor_sigkill(tmp_path, tiny_models):
    env = Mix(tmp_path)
    env.register_finetune()
    colour_dataset(env, "shapes")
    env.mix(
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "shapes",
        "--output_model_name",
        "survivor",
        "--base_model",
        tiny_models["llava"],
        "--model_type",
        "llava",
        *finetune_args(steps=8),
        "-d",
        check=0,
    )

    reg = registry(env)
    run = wait_for(
        lambda: (r := reg.runs("vlm-finetune", 1)[0])["status"] == "running" and r["worker_pid"] and r,
        timeout=120,
        what="running",
    )
    log = Path(run["log_path"])
    # kill the supervisor once Axolotl is training (its first logged step)
    wait_for(
        lambda: "'loss'" in log.read_text(errors="replace") or reg.run("vlm-finetune", 1)["status"] != "running",
        timeout=600,
        what="the first training step",
    )
    assert reg.run("vlm-finetune", 1)["status"] == "running", "training ended before the supervisor could be killed"
    os.kill(run["pid"], signal.SIGKILL)
    wait_for(lambda: gone(run["pid"]), timeout=10, what="the supervisor to die")

    final = wait_for(
        lambda: (r := reg.run("vlm-finetune", 1))["status"] not in ("pending", "running") and r,
        timeout=900,
        what="run end",
    )
    assert final["status"] == "completed", (final, log.read_text()[-3000:])
    assert final["output"]["model"] == "survivor"
    info = env.json("model", "get", "survivor")
    adapter = Path(info["adapter_path"])
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        assert (adapter / f).is_file(), f
    assert info["lineage"]["global_step"] == 8
    text = wait_for(lambda: "■ run #1" in (t := log.read_text(errors="replace")) and t, timeout=30, what="closing line")
    assert "■ run #1 completed" in text
