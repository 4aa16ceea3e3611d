"""Resume a failed or cancelled run from its latest complete checkpoint, as a new run with the same inputs.

A workflow that can resume declares, when it starts training, where its checkpoints appear and what a
complete one is (``RunFolder.declare_checkpoints``: ``checkpoints.json`` = ``{"output_dir": PATH,
"layout": CheckpointLayout, ...}``). The engine knows no trainer: it asks that declaration. The new
run's record carries ``resumed_from = {"run", "step", "checkpoint", ...}``; the workflow reads it from
its own run record and continues from there. Metrics up to the checkpoint are carried over, so the
resumed run's curve starts at step 1 with no gap and no duplicate step.
"""

from __future__ import annotations

from collections.abc import Mapping

from mixtrain.errors import Conflict, InvalidInput
from mixtrain.records import RunStatus
from mixtrain.workflows.runfolder import UNDECLARED_CHECKPOINTS, UPLOADED_TO, CheckpointLayout, RunFolder


def in_this_home(path: str, run_dir: str) -> str:
    """A workspace folder a run recorded, found in the home the run's folder is in now.

    The declaration holds the absolute path of its day; after `mv`/`cp -a`/a restore the same folder
    lives under the new home (a copy must resume from its own files, not the original's)."""
    from pathlib import Path

    from mixtrain.settings import WORKSPACE_DIR

    p, run = Path(path), Path(run_dir)
    if len(run.parts) < 4 or run.parts[-3] != "runs" or WORKSPACE_DIR not in p.parts[1:]:
        return path
    here = run.parents[2] / Path(*p.parts[p.parts.index(WORKSPACE_DIR, 1) :])
    return str(here) if here.exists() else path


def run_prefix(warehouse: str, run_id: int) -> str:
    """Where a run keeps what other machines need (team mode): ``<warehouse>/runs/<run id>``."""
    from mixtrain import objectstore

    return objectstore.join(warehouse, "runs", str(run_id))


def declaration(run: Mapping, settings=None) -> dict | None:
    """The run's checkpoint declaration: its run folder's, else (an ``s3://`` warehouse) the uploaded copy —
    `workflow resume` on a machine that never had the run's folder."""
    info = RunFolder(run["run_dir"]).checkpoint_declaration()
    if info is not None or settings is None or not settings.remote_warehouse or run.get("id") is None:
        return info
    import json

    from mixtrain import objectstore

    try:
        data = json.loads(
            objectstore.read_bytes(
                objectstore.join(run_prefix(settings.warehouse, run["id"]), RunFolder.CHECKPOINTS), settings
            )
        )
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plan(run: Mapping, settings=None) -> dict:
    """Where ``run`` can be resumed from, or a one-line error saying why it cannot.

    ``settings``: with an ``s3://`` team warehouse, where a run's checkpoints (and their declaration) are
    also uploaded; the newest complete checkpoint, local or uploaded, is the one resumed."""
    label = f"run #{run['number']} of {run['workflow']!r}"
    if RunStatus(run["status"]).is_active:
        raise Conflict(
            f"{label} is still {run['status']}",
            f"wait for it, or `mixtrain workflow cancel {run['workflow']} {run['number']}` first",
        )
    if run["status"] == "completed":
        raise InvalidInput(
            f"{label} completed; there is nothing to resume", "start a new run with `mixtrain workflow run`"
        )
    info = declaration(run, settings)
    if info is None:
        raise InvalidInput(
            f"{label} never started training, so it has no checkpoint", "start a new run with `mixtrain workflow run`"
        )
    try:
        layout = CheckpointLayout.from_json(info["layout"]) if "layout" in info else UNDECLARED_CHECKPOINTS
    except (KeyError, TypeError, ValueError):
        layout = None
    output_dir = info.get("output_dir")
    if isinstance(output_dir, str) and output_dir:
        output_dir = in_this_home(output_dir, run["run_dir"])
    ckpt = layout.latest_complete(output_dir) if layout and isinstance(output_dir, str) and output_dir else None
    found: tuple[str, int] | None = (str(ckpt), layout.step(ckpt)) if layout and ckpt else None
    uploaded = info.get(UPLOADED_TO)
    if layout is not None and isinstance(uploaded, str) and uploaded:
        # Team mode: every complete checkpoint was also uploaded. This machine may not have the run's
        # folder (another node trained it) or may have fewer checkpoints: the newest one wins, local on a tie.
        remote = layout.latest_uploaded(uploaded, settings)
        if remote and (found is None or remote[1] > found[1]):
            found = remote
    if layout is None or found is None:
        raise InvalidInput(
            f"{label} left no complete checkpoint (it failed before its first save)",
            "start a new run; pass --save_steps N to checkpoint every N steps",
        )
    return {
        **{k: v for k, v in info.items() if k not in ("output_dir", "layout", UPLOADED_TO)},
        "run": run["number"],
        "step": found[1],
        "checkpoint": found[0],
    }
