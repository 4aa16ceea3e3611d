"""Tiny offline VLMs (built once per session) and the short training every e2e test shares."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")


def finetune_args(
    steps: int = 3, learning_rate: str = "0.001", max_seq_length: int = 512, batch_size: int = 2, lora_r: int = 8
) -> list[str]:
    """The inputs of a short LoRA fine-tune of a tiny model (one epoch, ``steps`` optimizer steps)."""
    return [
        "--num_epochs",
        "1",
        "--batch_size",
        str(batch_size),
        "--gradient_accumulation_steps",
        "1",
        "--max_steps",
        str(steps),
        "--learning_rate",
        learning_rate,
        "--lora_r",
        str(lora_r),
        "--max_seq_length",
        str(max_seq_length),
    ]


TRAIN_ARGS = finetune_args()

_BUILD = (
    "import sys\nfrom mixtrain.testing.tiny_vlm import build_tiny_vlm\n"
    "for fam in sys.argv[2:]:\n    build_tiny_vlm(fam, f'{sys.argv[1]}/{fam}')\n"
)


def build_tiny_models(root: Path, families=FAMILIES, env: dict | None = None) -> dict[str, Path]:
    """Build tiny random ``families`` under ``root`` in one child process (the build is mostly import time)."""
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(root), *families], timeout=600, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"building tiny models failed:\n{proc.stderr[-3000:]}"
    return {f: root / f for f in families}


def shared_tiny_models(name: str, tmp, families=FAMILIES, env: dict | None = None) -> dict[str, Path]:
    """The tiny ``families`` for this session: built in a new folder of ``tmp`` (a tmp_path_factory), or —
    when ``make test`` runs the suite as two sessions (scripts/run_tests.py sets ``MIXTRAIN_TEST_SHARED``) —
    built once for both under a lock in that folder, the second session reading what the first built. No
    test writes into a base model."""
    shared = os.environ.get("MIXTRAIN_TEST_SHARED")
    if not shared:
        return build_tiny_models(tmp.mktemp(name), families, env)
    root = Path(shared) / name
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the session dies)
        done = root / "built.json"
        if done.is_file() and json.loads(done.read_text()) == list(families):
            return {f: root / f for f in families}
        shutil.rmtree(root, ignore_errors=True)  # a build that died half way
        models = build_tiny_models(root, families, env)
        done.write_text(json.dumps(list(families)))  # last: marks the build whole
        return models
