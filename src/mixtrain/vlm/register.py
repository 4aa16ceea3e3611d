"""Step 4 — register: check the adapter Axolotl wrote, surface its training state, record lineage."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from pathlib import Path

from mixtrain.errors import WorkflowFailed

REQUIRED = ("adapter_model.safetensors", "adapter_config.json")
REQUIRED_FULL = ("config.json",)  # --adapter full: the model's own weights (one file or index + shards) beside it
VERSIONED = ("axolotl", "transformers", "peft", "torch", "accelerate", "mixtrain")


def finalize_outputs(output_dir: Path, full: bool = False) -> dict:
    """Check the artifacts and copy the last checkpoint's trainer_state.json to the top."""
    missing = [f for f in (REQUIRED_FULL if full else REQUIRED) if not (output_dir / f).is_file()]
    if full and not any(output_dir.glob("model*.safetensors")):
        missing.append("model.safetensors")
    if missing:
        raise WorkflowFailed(
            f"training finished but {', '.join(missing)} is missing in {output_dir}", "see the run log"
        )
    checkpoints = sorted(
        (p for p in output_dir.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
        key=lambda p: int(p.name.split("-")[1]),  # by number: checkpoint-10 after checkpoint-9
    )
    state: dict = {}
    if checkpoints and (checkpoints[-1] / "trainer_state.json").is_file():
        shutil.copy2(checkpoints[-1] / "trainer_state.json", output_dir / "trainer_state.json")
    if (output_dir / "trainer_state.json").is_file():
        state = json.loads((output_dir / "trainer_state.json").read_text())
    return state


def final_train_loss(state: dict) -> float | None:
    history = state.get("log_history") or []
    for entry in reversed(history):
        if "train_loss" in entry:
            return float(entry["train_loss"])
    for entry in reversed(history):
        if "loss" in entry:
            return float(entry["loss"])
    return None


def final_eval_loss(state: dict) -> float | None:
    """The last eval loss the trainer logged (None when the run did not evaluate)."""
    for entry in reversed(state.get("log_history") or []):
        if "eval_loss" in entry:
            return float(entry["eval_loss"])
    return None


def versions() -> dict:
    out: dict[str, str | None] = {}
    for pkg in VERSIONED:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def register_model(
    models,
    *,
    spec,
    family_name: str,
    hf_model_type: str | None,
    output_dir: Path,
    snapshot_id,
    rows: int,
    state: dict,
    run: dict,
    eval_info: dict | None = None,
    trained: dict | None = None,
) -> dict:
    loss = final_train_loss(state)
    lineage = {
        # What trained (--adapter, --train_vision) and, from the loaded model itself, how many parameters.
        "training": {
            "adapter": spec.adapter,
            "train_vision": spec.train_vision,
            **(
                {
                    "trainable_params": trained["trainable_params"],
                    "total_params": trained["total_params"],
                    "trainable_by_part": trained["trainable_by_part"],
                    "linear4bit_layers": len(trained["linear4bit"]),
                }
                if trained
                else {}
            ),
        },
        "dataset": {"name": spec.dataset_name, "snapshot_id": snapshot_id, "rows_used": rows},
        "workflow_run": run,
        "params": spec.model_dump(),
        "hf_model_type": hf_model_type,
        "global_step": state.get("global_step"),
        "epochs": state.get("epoch"),
        "train_loss": loss,
        "eval_loss": final_eval_loss(state),
        "eval": eval_info,
        "versions": versions(),
        "axolotl_config": run.get("config"),
        "seed": spec.seed,
        "resumed_from": run.get("resumed_from"),  # {"run": N, "step": S} when `workflow resume` continued a run
    }
    return models.register(
        spec.output_model_name,
        base_model=spec.base_model,
        model_type=family_name,
        adapter_path=str(output_dir),
        train_loss=loss,
        lineage=lineage,
    )
