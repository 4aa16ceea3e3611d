"""GPU checks (marker `gpu`): skipped without CUDA. On a GPU the same fine-tune uses bf16/fp16 and FA2 where present."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True
    )
    return out.stdout.strip() == "True"


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_hardware_detection_on_gpu():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, dataclasses; from mixtrain.hardware import detect; print(json.dumps(dataclasses.asdict(detect())))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    hw = json.loads(out.stdout)
    assert hw["cuda"] and hw["n_gpu"] >= 1


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_llava_finetune_on_gpu(tmp_path, tiny_models):
    from harness import Mix, colour_dataset

    base = tiny_models["llava"]
    env = Mix(tmp_path)
    env.register_finetune()
    colour_dataset(env, "gpu-shapes", n=8)
    res = env.mix(
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "gpu-shapes",
        "--output_model_name",
        "gpu-llava",
        "--base_model",
        base,
        "--max_steps",
        "3",
        "--batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        check=0,
    )
    assert "CPU only" not in res.stdout
    assert env.json("model", "get", "gpu-llava")["lineage"]["global_step"] == 3
    # The YAML follows the GPU: half precision (bf16 where supported, else fp16), FA2 only with flash_attn.
    import yaml

    hw = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import json, dataclasses; from mixtrain.hardware import detect; print(json.dumps(dataclasses.asdict(detect())))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    cfg = yaml.safe_load((Path(env.last_run()["run_dir"]) / "axolotl.yml").read_text())
    assert cfg["bf16"] == ("auto" if hw["bf16"] else False) and cfg["fp16"] is (not hw["bf16"])
    assert cfg["attn_implementation"] == ("flash_attention_2" if hw["flash_attn"] else "sdpa")
    assert cfg.get("gradient_checkpointing") is True
