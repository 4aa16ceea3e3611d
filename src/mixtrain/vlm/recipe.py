"""The fine-tune, top to bottom: prepare → configure → launch → register.

Called by the ``AxolotlVLMFinetune`` workflow inside a run (the worker process), so it may import
heavy libraries; Axolotl itself runs in a child process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.vlm import configure, families, launch, register
from mixtrain.vlm.prepare import prepare
from mixtrain.vlm.spec import parse_spec
from mixtrain.workflows.progress import phase_line


def log(msg: str) -> None:
    print(msg, flush=True)


def finetune(**params) -> dict:
    from mixtrain.datasets.store import DatasetStore
    from mixtrain.models.registry import ModelRegistry
    from mixtrain.settings import load_settings

    spec = parse_spec(params)
    settings = load_settings()
    run_dir = Path(os.environ.get("MIXTRAIN_RUN_DIR") or tempfile.mkdtemp(prefix="mixtrain-run-"))
    run_number = os.environ.get("MIXTRAIN_RUN_NUMBER", "0")
    if Path(spec.base_model).expanduser().is_dir():
        spec.base_model = str(Path(spec.base_model).expanduser().resolve())

    # -- 0. what are we training? ----------------------------------------------------------------
    check_family(families.get_family(spec.model_type), spec)  # what the user asked for, before any download
    family, base_config = families.resolve(spec.model_type, spec.base_model, log)
    if base_config is None:
        raise InvalidInput(
            f"cannot read base model {spec.base_model!r}: not a local folder, and its config is not in the Hugging Face cache or reachable on the hub",
            "download it first (`huggingface-cli download MODEL`) or pass a local model folder as --base_model",
        )
    check_family(family, spec)  # what the base model really is

    # -- 1. prepare ----------------------------------------------------------------------------------
    data = prepare(DatasetStore(settings), spec, run_dir, log)

    # -- 2. configure --------------------------------------------------------------------------------
    from mixtrain.vlm.hardware import detect

    t0 = time.monotonic()
    hw = detect()
    # Unique per run, even across a re-created workflow or a direct SDK call: a registered version's
    # adapter folder is never reused or wiped by a later run.
    run_tag = f"{os.environ.get('MIXTRAIN_WORKFLOW', 'local')}-{run_number}-{uuid.uuid4().hex[:8]}"
    output_dir = settings.workspace / "output" / spec.output_model_name / f"run-{run_tag}"
    ds_json = configure.write_deepspeed(spec.deepspeed_config, run_dir / f"deepspeed_{spec.deepspeed_config}.json") if spec.deepspeed_config else None
    wandb_online = bool(spec.wandb_project and os.environ.get("WANDB_API_KEY"))
    if spec.wandb_project and not wandb_online:
        log(f"W&B: no WANDB_API_KEY secret — logging offline under {run_dir}/wandb (`mixtrain secret create WANDB_API_KEY ...` to sync live)")
    cfg = configure.build_config(
        spec, family, hw, train_jsonl=data.jsonl, output_dir=output_dir, run_dir=run_dir, deepspeed_json=ds_json,
        wandb_run_name=f"{spec.output_model_name}-run{run_number}", wandb_online=wandb_online, warn=lambda m: log(f"warning: {m}"),
    )
    config_path = configure.write_yaml(cfg, run_dir / "axolotl.yml")
    log(phase_line(f"configure: {f'{hw.n_gpu}× {hw.gpu_name}' if hw.cuda else 'CPU only'}, Axolotl config {config_path}", time.monotonic() - t0))
    env = launch.training_env(dict(os.environ), wandb=bool(spec.wandb_project), run_dir=run_dir)
    if spec.dry_run:
        try:
            launch.run(launch.validate_command(config_path), env, run_dir, log)
        finally:
            shutil.rmtree(output_dir, ignore_errors=True)  # validation only wrote Axolotl's debug.log there
        log("\n--- data report ---\n" + (run_dir / "data_report.json").read_text())
        log("--- axolotl config (" + str(config_path) + ") ---\n" + config_path.read_text())
        return {"dry_run": True, "config": str(config_path), "rows": data.rows, "dataset_snapshot_id": data.snapshot_id}

    # -- 3. launch -----------------------------------------------------------------------------------
    dist = launch.distributed_from_env()
    for line in launch.banner(dist):
        log(line)
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir(parents=True)
    cmd = launch.command(config_path, dist, cuda=hw.cuda, n_gpu=hw.n_gpu, num_processes=spec.num_processes)
    try:
        launch.run(cmd, env, run_dir, log)
    except BaseException:
        _discard(output_dir, run_dir)
        raise
    if dist is not None and dist.machine_rank != 0:
        log("training finished on this node; machine rank 0 registers the model")
        return {"node_rank": dist.machine_rank, "output_dir": str(output_dir)}

    # -- 4. register ---------------------------------------------------------------------------------
    state = register.finalize_outputs(output_dir)
    run = {"workflow": os.environ.get("MIXTRAIN_WORKFLOW"), "number": int(run_number), "id": os.environ.get("MIXTRAIN_RUN_ID"), "config": str(config_path)}
    model = register.register_model(
        ModelRegistry(settings), spec=spec, family_name=family.name, hf_model_type=base_config.get("model_type"), output_dir=output_dir,
        snapshot_id=data.snapshot_id, rows=data.rows, state=state, run=run,
    )
    log(f"registered model {model['name']} version {model['version']} (train loss {model['train_loss']}) — adapter at {output_dir}")
    return {"model": model["name"], "version": model["version"], "train_loss": model["train_loss"], "output_dir": str(output_dir), "dataset_snapshot_id": data.snapshot_id}


def check_family(family, spec) -> None:
    if family.trust_remote_code and not spec.trust_remote_code:
        raise InvalidInput(
            f"{family.description} runs model code downloaded from the model hub",
            "pass --trust_remote_code true if you trust that code",
        )
    if not family.supported:
        raise InvalidInput(f"{family.description} cannot be fine-tuned here: {family.unsupported_reason}", "use llava, llava_next or qwen2_vl")


def _discard(output_dir: Path, run_dir: Path) -> None:
    """A failed training leaves no half-written model behind; Axolotl's debug log moves to the run folder."""
    debug = output_dir / "debug.log"
    if debug.is_file():
        shutil.move(str(debug), str(run_dir / "axolotl_debug.log"))
    shutil.rmtree(output_dir, ignore_errors=True)
