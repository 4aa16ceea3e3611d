"""Resume a failed or cancelled run from its latest complete checkpoint, as a new run with the same inputs.

A workflow that can resume writes ``CHECKPOINTS_FILE`` in its run folder when it starts training:
``{"output_dir": PATH, ...}``, the folder where checkpoints appear as ``checkpoint-<step>/``. The
new run's record carries ``resumed_from = {"run", "step", "checkpoint", ...}``; the workflow reads it
from its own run record and continues from there. Metrics up to the checkpoint are carried over, so
the resumed run's curve starts at step 1 with no gap and no duplicate step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mixtrain.errors import Conflict, InvalidInput

CHECKPOINTS_FILE = "checkpoints.json"
# What the HF Trainer writes into checkpoint-N, trainer_state.json last (transformers' _save_checkpoint).
CHECKPOINT_FILES = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")


def checkpoints(output_dir: Path | str) -> list[Path]:
    """``checkpoint-<N>`` folders sorted by N as a number (checkpoint-100 after checkpoint-20)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def is_complete(ckpt: Path) -> bool:
    """Every file present and trainer_state.json (written last) readable and at this checkpoint's step.

    A kill while saving leaves a folder without trainer_state.json, or with a truncated one.
    """
    if any(not (ckpt / f).is_file() or (ckpt / f).stat().st_size == 0 for f in CHECKPOINT_FILES):
        return False
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == int(ckpt.name.split("-")[1])


def latest_complete(output_dir: Path | str) -> Path | None:
    return next((c for c in reversed(checkpoints(output_dir)) if is_complete(c)), None)


def plan(run: dict) -> dict:
    """Where ``run`` can be resumed from, or a one-line error saying why it cannot."""
    label = f"run #{run['number']} of {run['workflow']!r}"
    if run["status"] in ("pending", "running"):
        raise Conflict(
            f"{label} is still {run['status']}",
            f"wait for it, or `mixtrain workflow cancel {run['workflow']} {run['number']}` first",
        )
    if run["status"] == "completed":
        raise InvalidInput(
            f"{label} completed; there is nothing to resume", "start a new run with `mixtrain workflow run`"
        )
    try:
        info = json.loads((Path(run["run_dir"]) / CHECKPOINTS_FILE).read_text())
    except (OSError, ValueError):
        raise InvalidInput(
            f"{label} never started training, so it has no checkpoint", "start a new run with `mixtrain workflow run`"
        ) from None
    ckpt = latest_complete(info.get("output_dir") or "")
    if ckpt is None:
        raise InvalidInput(
            f"{label} left no complete checkpoint (it failed before its first save)",
            "start a new run; pass --save_steps N to checkpoint every N steps",
        )
    return {
        **{k: v for k, v in info.items() if k != "output_dir"},
        "run": run["number"],
        "step": int(ckpt.name.split("-")[1]),
        "checkpoint": str(ckpt),
    }
