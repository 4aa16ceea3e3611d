"""A fine-tune's checkpoints and a gang's inputs go through the team warehouse (#21 §2), on the session's real
S3 server (SeaweedFS), without training: the checkpoint folders are written the way the Hugging Face Trainer
leaves them (trainer_state.json last); the real 2-node training is tests/team/test_ray_finetune.py.

- Each complete checkpoint is uploaded once it is complete (an unfinished one never); a newer one
  supersedes the older upload (the trainer keeps one too), and `workflow resume`'s plan, on a machine that
  never had the run's folder, finds the newest uploaded one from the run's uploaded declaration.
- A gang's trained adapter, written on rank 0's node, reaches the run that registers it (checkpoints left out).
- A gang worker on a node without the run's files gets them — the Axolotl config, the rows and the images
  they name — back at the same paths from the uploaded inputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mixtrain import objectstore
from mixtrain.errors import InvalidInput
from mixtrain.vlm import remote
from mixtrain.vlm.files import HF_TRAINER_CHECKPOINT
from mixtrain.workflows import resume
from mixtrain.workflows.runfolder import RunFolder


@pytest.fixture
def settings(tmp_path, s3_env, monkeypatch):
    for k, v in {**s3_env, "MIXTRAIN_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(k, v)
    from mixtrain.settings import load_settings

    return load_settings()


def _checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    ckpt = output_dir / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt"):
        (ckpt / name).write_bytes(f"{name} at step {step}".encode())
    if complete:  # the trainer writes its state last
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def test_complete_checkpoints_are_uploaded_and_resume_finds_the_newest_without_the_run_folder(tmp_path, settings):
    prefix = resume.run_prefix(settings.warehouse, 41)
    uploads = objectstore.join(prefix, "checkpoints")
    run_dir, output_dir = tmp_path / "runs" / "ft" / "1", tmp_path / "output" / "run-1"
    run_dir.mkdir(parents=True)
    folder = RunFolder(run_dir)
    folder.declare_checkpoints(output_dir, HF_TRAINER_CHECKPOINT, uploaded_to=uploads, dataset_snapshot_id=7)
    objectstore.put_file(folder.checkpoints, objectstore.join(prefix, RunFolder.CHECKPOINTS), settings)
    said: list[str] = []

    _checkpoint(output_dir, 2)
    uploader = remote.CheckpointUploader(output_dir, HF_TRAINER_CHECKPOINT, uploads, said.append, settings)
    uploader.sweep()
    assert HF_TRAINER_CHECKPOINT.latest_uploaded(uploads) == (objectstore.join(uploads, "checkpoint-2"), 2)
    _checkpoint(output_dir, 4)
    _checkpoint(output_dir, 6, complete=False)  # being saved: not uploaded
    uploader.sweep()
    keys = {e.uri[len(uploads) + 1 :] for e in objectstore.listing(uploads + "/", settings)}
    assert keys == {
        f"checkpoint-4/{n}"
        for n in (
            "adapter_model.safetensors",
            "optimizer.pt",
            "scheduler.pt",
            "trainer_state.json",
            objectstore.MANIFEST,
        )
    }  # checkpoint-2 superseded, checkpoint-6 unfinished
    assert said == [f"checkpoint checkpoint-{n} uploaded to {uploads}/checkpoint-{n}" for n in (2, 4)]

    shutil.rmtree(run_dir)  # "another machine": neither the run folder nor its checkpoints are here
    shutil.rmtree(output_dir)
    failed = {"number": 1, "workflow": "ft", "status": "failed", "run_dir": str(run_dir), "id": 41}
    origin = resume.plan(failed, settings)
    assert origin == {"dataset_snapshot_id": 7, "run": 1, "step": 4, "checkpoint": f"{uploads}/checkpoint-4"}
    local = objectstore.get_dir(origin["checkpoint"], settings)
    assert (local / "optimizer.pt").read_bytes() == b"optimizer.pt at step 4"
    assert json.loads((local / "trainer_state.json").read_text()) == {"global_step": 4}
    with pytest.raises(InvalidInput, match="never started training"):
        resume.plan({**failed, "id": 42}, settings)  # nothing uploaded for that run


def test_a_local_checkpoint_as_new_as_the_uploaded_one_wins(tmp_path, settings):
    uploads = objectstore.join(resume.run_prefix(settings.warehouse, 5), "checkpoints")
    run_dir, output_dir = tmp_path / "run", tmp_path / "out"
    run_dir.mkdir()
    RunFolder(run_dir).declare_checkpoints(output_dir, HF_TRAINER_CHECKPOINT, uploaded_to=uploads)
    remote.CheckpointUploader(_checkpoint(output_dir, 2).parent, HF_TRAINER_CHECKPOINT, uploads, print).sweep()
    _checkpoint(output_dir, 3)
    run = {"number": 1, "workflow": "ft", "status": "failed", "run_dir": str(run_dir), "id": 5}
    assert resume.plan(run, settings)["checkpoint"] == str(output_dir / "checkpoint-3")
    shutil.rmtree(output_dir / "checkpoint-3")
    assert resume.plan(run, settings)["checkpoint"] == str(output_dir / "checkpoint-2")  # a tie: local
    shutil.rmtree(output_dir)
    assert resume.plan(run, settings)["checkpoint"] == f"{uploads}/checkpoint-2"


def test_gang_inputs_come_back_at_their_paths_on_a_node_without_them(tmp_path, settings):
    run_dir, images = tmp_path / "node0" / "run", tmp_path / "node0" / "cache" / "images"
    run_dir.mkdir(parents=True)
    images.mkdir(parents=True)
    pic = images / "ab12.png"
    pic.write_bytes(b"\x89PNG not really")
    row = {
        "messages": [{"role": "user", "content": [{"type": "image", "path": str(pic)}, {"type": "text", "text": "?"}]}]
    }
    (run_dir / "train.jsonl").write_text(json.dumps(row) + "\n")
    (run_dir / "axolotl.yml").write_text(f"datasets:\n- path: {run_dir / 'train.jsonl'}\n")
    (run_dir / "preflight_request.json").write_text("{}")
    originals = {p: p.read_bytes() for p in (pic, run_dir / "train.jsonl", run_dir / "axolotl.yml")}

    uri = remote.upload_inputs(
        [run_dir / "axolotl.yml", run_dir / "preflight_request.json"],
        [run_dir / "train.jsonl"],
        f"{settings.warehouse}/runs/9/inputs",
        settings,
    )
    shutil.rmtree(tmp_path / "node0")  # the worker's node never had them
    assert remote.fetch_inputs(uri, settings) == 4
    for p, data in originals.items():
        assert p.read_bytes() == data
    assert remote.fetch_inputs(uri, settings) == 0  # already here: nothing placed twice


def test_a_gangs_trained_output_reaches_the_run_without_its_checkpoints(tmp_path, settings):
    out = tmp_path / "rank0" / "output"
    _checkpoint(out, 2)
    (out / "adapter_model.safetensors").write_bytes(b"trained weights")
    (out / "adapter_config.json").write_text("{}")
    uri = remote.upload_output(out, f"{settings.warehouse}/runs/3/output", settings)
    here = tmp_path / "driver" / "output"  # the run's machine: its output folder is empty
    here.mkdir(parents=True)
    assert remote.fetch_output(uri, here, settings) == 2
    assert sorted(p.name for p in here.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert (here / "adapter_model.safetensors").read_bytes() == b"trained weights"
    assert remote.fetch_output(uri, out, settings) == 0  # a shared disk: nothing to fetch
