"""Which checkpoint a resumed run continues from, and the runs that cannot be resumed."""

from __future__ import annotations

import json

import pytest

from mixtrain.errors import Conflict, InvalidInput
from mixtrain.vlm.files import HF_TRAINER_CHECKPOINT as LAYOUT
from mixtrain.workflows import resume
from mixtrain.workflows.runfolder import RunFolder


def checkpoint(root, step: int, *, state: str | None = "ok", skip: tuple = ()) -> None:
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    for f in LAYOUT.files[:-1]:
        if f not in skip:
            (d / f).write_bytes(b"x" * 8)
    if state == "ok":
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    elif state is not None:
        (d / "trainer_state.json").write_text(state)


def test_checkpoints_sort_by_number_not_by_name(tmp_path):
    for step in (100, 20, 3):
        checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-final").mkdir()
    (tmp_path / "checkpoint-7.tmp").mkdir()
    assert [p.name for p in LAYOUT.checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-20", "checkpoint-100"]
    assert LAYOUT.latest_complete(tmp_path).name == "checkpoint-100"


@pytest.mark.parametrize(
    "broken",
    [
        {"state": None},  # killed before trainer_state.json (written last)
        {"state": '{"global_step": 1'},  # truncated JSON
        {"state": json.dumps({"global_step": 99})},  # a state from another step
        {"skip": ("optimizer.pt",)},  # a file missing
    ],
)
def test_a_half_written_checkpoint_is_skipped(tmp_path, broken):
    checkpoint(tmp_path, 20)
    checkpoint(tmp_path, 100, **broken)
    assert LAYOUT.latest_complete(tmp_path).name == "checkpoint-20"


def test_an_empty_file_is_not_complete(tmp_path):
    checkpoint(tmp_path, 4)
    (tmp_path / "checkpoint-4" / "scheduler.pt").write_bytes(b"")
    assert LAYOUT.latest_complete(tmp_path) is None


def _run(tmp_path, status: str, output_dir=None, *, declared: bool = True) -> dict:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    if output_dir is not None and declared:
        RunFolder(run_dir).declare_checkpoints(output_dir, LAYOUT, dataset_snapshot_id=7)
    elif output_dir is not None:  # a run folder from before workflows declared their checkpoint layout
        (run_dir / RunFolder.CHECKPOINTS).write_text(
            json.dumps({"output_dir": str(output_dir), "dataset_snapshot_id": 7})
        )
    return {"number": 3, "workflow": "vlm-finetune", "status": status, "run_dir": str(run_dir)}


@pytest.mark.parametrize("declared", [True, False])
def test_plan_names_run_step_checkpoint_and_snapshot(tmp_path, declared):
    out = tmp_path / "out"
    checkpoint(out, 4)
    checkpoint(out, 8, state=None)
    assert resume.plan(_run(tmp_path, "failed", out, declared=declared)) == {
        "run": 3,
        "step": 4,
        "checkpoint": str(out / "checkpoint-4"),
        "dataset_snapshot_id": 7,
    }


@pytest.mark.parametrize(
    "status,has_dir,error,message",
    [
        ("running", True, Conflict, "is still running"),
        ("pending", True, Conflict, "is still pending"),
        ("completed", True, InvalidInput, "completed; there is nothing to resume"),
        ("failed", False, InvalidInput, "never started training"),
        ("cancelled", True, InvalidInput, "left no complete checkpoint"),
    ],
)
def test_runs_that_cannot_be_resumed(tmp_path, status, has_dir, error, message):
    out = tmp_path / "out"
    checkpoint(out, 2, state=None)
    with pytest.raises(error, match=message):
        resume.plan(_run(tmp_path, status, out if has_dir else None))


def test_the_engine_asks_the_declared_layout(tmp_path):
    """A workflow with its own checkpoint shape: resume follows the declaration, not the HF Trainer's names."""
    from mixtrain.workflows.runfolder import CheckpointLayout

    out = tmp_path / "out"
    (out / "ckpt_30").mkdir(parents=True)
    (out / "ckpt_30" / "weights.bin").write_bytes(b"w")
    (out / "ckpt_30" / "state.json").write_text(json.dumps({"step": 30}))
    (out / "ckpt_40").mkdir()  # killed while saving: no state yet
    (out / "ckpt_40" / "weights.bin").write_bytes(b"w")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    layout = CheckpointLayout(
        files=("weights.bin", "state.json"), state_file="state.json", step_key="step", prefix="ckpt_"
    )
    RunFolder(run_dir).declare_checkpoints(out, layout)
    run = {"number": 1, "workflow": "mine", "status": "failed", "run_dir": str(run_dir)}
    assert resume.plan(run) == {"run": 1, "step": 30, "checkpoint": str(out / "ckpt_30")}


def test_a_declaration_without_an_output_dir_has_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint(tmp_path, 4)  # in the current directory: must not be picked up
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RunFolder.CHECKPOINTS).write_text(json.dumps({"output_dir": ""}))
    with pytest.raises(InvalidInput, match="left no complete checkpoint"):
        resume.plan({"number": 1, "workflow": "w", "status": "failed", "run_dir": str(run_dir)})


def test_a_moved_home_resumes_from_its_own_workspace(tmp_path):
    """The declaration names the old home's folder; after a move (or in a copy) the run resumes from the
    checkpoint under the home its run folder is in now — never the original's."""
    old, new = tmp_path / "old", tmp_path / "new"
    out = old / "axolotl_workspace" / "output" / "m" / "run-1"
    checkpoint(out, 4)
    run_dir = old / "runs" / "vlm-finetune" / "1"
    run_dir.mkdir(parents=True)
    RunFolder(run_dir).declare_checkpoints(out, LAYOUT, dataset_snapshot_id=7)
    import shutil

    shutil.copytree(old, new)  # a copy: the original stays, and must not be used
    run = {
        "number": 1,
        "workflow": "vlm-finetune",
        "status": "failed",
        "run_dir": str(new / "runs" / "vlm-finetune" / "1"),
    }
    assert resume.plan(run)["checkpoint"] == str(new / "axolotl_workspace" / "output" / "m" / "run-1" / "checkpoint-4")
    shutil.rmtree(old)  # moved: the same answer
    assert resume.plan(run)["checkpoint"].startswith(str(new))
