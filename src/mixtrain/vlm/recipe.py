"""The fine-tune, top to bottom: prepare → configure → launch → register.

Called by the ``AxolotlVLMFinetune`` workflow inside a run (the worker process), so it may import
heavy libraries; Axolotl itself runs in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.vlm import configure, families, launch, register
from mixtrain.vlm.prepare import prepare
from mixtrain.vlm.spec import FinetuneSpec
from mixtrain.workflows.context import RunContext, current_run
from mixtrain.workflows.progress import phase_line
from mixtrain.workflows.resume import CHECKPOINTS_FILE, checkpoints


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class FinetuneResult:
    """What a fine-tune run returns (its recorded output): one shape for a dry run, a worker node and a registration."""

    dataset_snapshot_id: int | None
    rows: int
    config: str
    output_dir: str | None = None
    model: str | None = None
    version: int | None = None
    train_loss: float | None = None
    dry_run: bool = False
    node_rank: int = 0


def finetune(spec: FinetuneSpec, ctx: RunContext | None = None) -> FinetuneResult:
    from mixtrain.datasets.store import DatasetStore
    from mixtrain.models.registry import ModelRegistry
    from mixtrain.settings import load_settings

    ctx = ctx or current_run() or RunContext.local()
    settings = load_settings()
    run_dir, run_number = ctx.run_dir, ctx.number
    if Path(spec.base_model).expanduser().is_dir():
        spec.base_model = str(Path(spec.base_model).expanduser().resolve())

    # -- 0. what are we training? ----------------------------------------------------------------
    check_family(families.get_family(spec.model_type), spec)  # what the user asked for, before any download
    family, base_config = families.resolve(spec.model_type, spec.base_model, log)
    check_family(family, spec)  # what the base model really is

    # -- 1. prepare ----------------------------------------------------------------------------------
    origin = resumed_from(settings, ctx)  # `workflow resume`: continue another run's checkpoint, on its data
    if origin:
        log(phase_line(f"resume run #{origin['run']} from step {origin['step']} ({origin['checkpoint']})"))
    data = prepare(
        DatasetStore(settings), spec, run_dir, log, snapshot_id=origin.get("dataset_snapshot_id") if origin else None
    )

    # -- 2. configure --------------------------------------------------------------------------------
    from mixtrain.hardware import detect

    t0 = time.monotonic()
    hw = detect()
    # Unique per run, even across a re-created workflow or a direct SDK call: a registered version's
    # adapter folder is never reused or wiped by a later run.
    run_tag = f"{ctx.workflow}-{run_number}-{uuid.uuid4().hex[:8]}"
    output_dir = settings.workspace / "output" / spec.output_model_name / f"run-{run_tag}"
    ds_json = (
        configure.write_deepspeed(spec.deepspeed_config, run_dir / f"deepspeed_{spec.deepspeed_config}.json")
        if spec.deepspeed_config
        else None
    )
    wandb_online = bool(spec.wandb_project and os.environ.get("WANDB_API_KEY"))
    if spec.wandb_project and not wandb_online:
        log(
            f"W&B: no WANDB_API_KEY secret — logging offline under {run_dir}/wandb (`mixtrain secret create WANDB_API_KEY ...` to sync live)"
        )
    cfg = configure.build_config(
        spec,
        family,
        hw,
        train_jsonl=data.jsonl,
        eval_jsonl=data.eval_jsonl,
        output_dir=output_dir,
        run_dir=run_dir,
        deepspeed_json=ds_json,
        wandb_run_name=f"{spec.output_model_name}-run{run_number}",
        wandb_online=wandb_online,
        warn=lambda m: log(f"warning: {m}"),
    )
    if origin:
        cfg["resume_from_checkpoint"] = origin["checkpoint"]  # weights, optimizer, scheduler, RNG, data position
    config_path = configure.write_yaml(cfg, run_dir / "axolotl.yml")
    # What the training process's preflight (vlm/preflight.py) needs beyond the YAML.
    (run_dir / "preflight_request.json").write_text(
        json.dumps(
            {
                "id": uuid.uuid4().hex,  # the node's other training processes wait for this request's result
                "on_long_row": spec.on_long_row,
                "lora_target": family.lora_target,
                "processes": spec.num_processes or max(1, hw.n_gpu),
            }
        )
    )
    log(
        phase_line(
            f"configure: {f'{hw.n_gpu}× {hw.gpu_name}' if hw.cuda else 'CPU only'}, Axolotl config {config_path}",
            time.monotonic() - t0,
        )
    )
    if spec.verbose:
        log(f"--- {config_path} ---\n{config_path.read_text().rstrip()}\n---")
    env = launch.training_env(dict(os.environ), wandb=bool(spec.wandb_project), run_dir=run_dir)
    env.pop("MIXTRAIN_RUN_ID", None)
    env.update(track_env(ctx))
    if spec.dry_run:
        try:
            launch.run(launch.validate_command(config_path), env, run_dir, log)
        finally:
            shutil.rmtree(output_dir, ignore_errors=True)  # validation only wrote Axolotl's debug.log there
        report = json.loads((run_dir / "data_report.json").read_text())
        log(
            phase_line(
                f"dry run: {report['rows_used']} of {report['rows_total']} rows usable ({report['rows_bad']} unusable); "
                f"report {run_dir / 'data_report.json'}; Axolotl config {config_path} (validated by Axolotl, not trained)"
            )
        )
        return FinetuneResult(data.snapshot_id, data.rows, str(config_path), dry_run=True)

    # -- 3. launch -----------------------------------------------------------------------------------
    dist = launch.distributed_from_env()
    for line in launch.banner(dist):
        log(line)
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir(parents=True)
    # Where this run's checkpoints go, so `mixtrain workflow resume` can find them if the run dies.
    (run_dir / CHECKPOINTS_FILE).write_text(
        json.dumps({"output_dir": str(output_dir), "dataset_snapshot_id": data.snapshot_id})
    )
    cmd = launch.command(config_path, dist, cuda=hw.cuda, n_gpu=hw.n_gpu, num_processes=spec.num_processes)
    try:
        launch.run(cmd, env, run_dir, log)
    except BaseException:
        _keep_checkpoints(output_dir, run_dir, log, f"{ctx.workflow} {ctx.number}")
        raise
    if dist is not None and dist.machine_rank != 0:
        log("training finished on this node; machine rank 0 registers the model")
        return FinetuneResult(
            data.snapshot_id, data.rows, str(config_path), output_dir=str(output_dir), node_rank=dist.machine_rank
        )

    # -- 4. register ---------------------------------------------------------------------------------
    state = register.finalize_outputs(output_dir)
    run: dict[str, object] = {
        "workflow": ctx.workflow if ctx.id is not None else None,
        "number": run_number,
        "id": ctx.id,
        "config": str(config_path),
    }
    if origin:
        run["resumed_from"] = {"run": origin["run"], "step": origin["step"]}
    model = register.register_model(
        ModelRegistry(settings),
        spec=spec,
        family_name=family.name,
        hf_model_type=base_config.get("model_type"),
        output_dir=output_dir,
        snapshot_id=data.snapshot_id,
        rows=data.rows,
        state=state,
        run=run,
        eval_info={k: v for k, v in data.eval.items() if k != "held_out_rows"} if data.eval else None,
    )
    log(
        f"registered model {model['name']} version {model['version']} (train loss {model['train_loss']}) — adapter at {output_dir}"
    )
    return FinetuneResult(
        data.snapshot_id,
        data.rows,
        str(config_path),
        output_dir=str(output_dir),
        model=model["name"],
        version=model["version"],
        train_loss=model["train_loss"],
    )


def check_family(family, spec) -> None:
    if family.trust_remote_code and not spec.trust_remote_code:
        raise InvalidInput(
            f"{family.description} runs model code downloaded from the model hub",
            "pass --trust_remote_code true if you trust that code",
        )
    if not family.supported:
        raise InvalidInput(
            f"{family.description} cannot be fine-tuned here: {family.unsupported_reason}",
            "use llava, llava_next or qwen2_vl",
        )


def track_env(ctx: RunContext) -> dict:
    """What the training process's metrics tracker (vlm/track.py) needs to know about this run."""
    out = {"MIXTRAIN_RUN_DIR": str(ctx.run_dir)}
    if ctx.id is not None:
        out["MIXTRAIN_RUN_ID"] = str(ctx.id)
    return out


def resumed_from(settings, ctx: RunContext) -> dict | None:
    """This run's ``resumed_from`` record (set by `mixtrain workflow resume`), if any."""
    if ctx.id is None:
        return None
    from mixtrain.workflows.registry import WorkflowRegistry

    return WorkflowRegistry(settings).run_by_id(ctx.id).get("resumed_from")


def _keep_checkpoints(output_dir: Path, run_dir: Path, log, run: str) -> None:
    """A failed training keeps its checkpoints (to resume) and drops the rest; Axolotl's debug log moves to the run folder."""
    debug = output_dir / "debug.log"
    if debug.is_file():
        shutil.move(str(debug), str(run_dir / "axolotl_debug.log"))
    kept = checkpoints(output_dir)
    if not kept:
        shutil.rmtree(output_dir, ignore_errors=True)
        return
    for p in output_dir.iterdir():
        if p not in kept:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    log(f"kept {len(kept)} checkpoint(s) in {output_dir} — continue with `mixtrain workflow resume {run}`")
