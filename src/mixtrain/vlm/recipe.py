"""The fine-tune, top to bottom: prepare → configure → launch → register.

Called by the ``AxolotlVLMFinetune`` workflow inside a run (the worker process), so it may import
heavy libraries; Axolotl itself runs in a child process.

Shaped like torchtune's recipes: ``finetune()`` is the short driver; each phase is one function that
takes what the earlier phases decided (``Setup``, ``PreparedData``, ``Training``) and returns what the
next needs. The input spec is never changed: what the recipe resolves (the base model's absolute
folder) lives in a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from mixtrain import objectstore
from mixtrain.errors import InvalidInput
from mixtrain.settings import Settings
from mixtrain.vlm import configure, families, family_rows, gang, launch, register, remote
from mixtrain.vlm.files import HF_TRAINER_CHECKPOINT, HF_TRAINER_FULL_CHECKPOINT, FinetuneFolder
from mixtrain.vlm.prepare import PreparedData, prepare
from mixtrain.vlm.spec import FinetuneSpec
from mixtrain.workflows.context import RunContext, current_run
from mixtrain.workflows.progress import phase_line


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


@dataclass(frozen=True)
class Setup:
    """What the run trains and where: decided once, before any data is read."""

    spec: FinetuneSpec  # the caller's spec with the base model's folder made absolute (a copy)
    ctx: RunContext
    settings: Settings
    folder: FinetuneFolder
    family: families.Family
    base_config: dict
    origin: dict | None  # `workflow resume`: the run, step and checkpoint this run continues


@dataclass(frozen=True)
class Training:
    """What configure decided: the Axolotl YAML, where the adapter goes, the training process's environment."""

    config_path: Path
    output_dir: Path
    env: dict
    cuda: bool
    n_gpu: int


def finetune(spec: FinetuneSpec, ctx: RunContext | None = None) -> FinetuneResult:
    run = setup(spec, ctx)
    data = prepare_data(run)
    training = configure_training(run, data)
    if run.spec.dry_run:
        return validate_only(run, data, training)
    node_rank = launch_training(run, data, training)
    if node_rank != 0:
        return FinetuneResult(
            data.snapshot_id,
            data.rows,
            str(training.config_path),
            output_dir=str(training.output_dir),
            node_rank=node_rank,
        )
    return register_adapter(run, data, training)


# -- 0. setup: what are we training? -----------------------------------------------------------------
def setup(spec: FinetuneSpec, ctx: RunContext | None = None) -> Setup:
    from mixtrain.settings import load_settings

    ctx = ctx or current_run() or RunContext.local()
    settings = load_settings()
    if Path(spec.base_model).expanduser().is_dir():
        spec = spec.model_copy(update={"base_model": str(Path(spec.base_model).expanduser().resolve())})
    check_family(families.get_family(spec.model_type), spec)  # what the user asked for, before any download
    family, base_config = families.resolve(spec.model_type, spec.base_model, log)
    check_family(family, spec)  # what the base model really is
    check_modes(spec, family, base_config)
    return Setup(spec, ctx, settings, FinetuneFolder(ctx.run_dir), family, base_config, resumed_from(settings, ctx))


# -- 1. prepare ----------------------------------------------------------------------------------------
def prepare_data(run: Setup) -> PreparedData:
    from mixtrain.datasets.store import DatasetStore

    origin = run.origin  # a resumed run continues another run's checkpoint, on that run's data
    if origin:
        log(phase_line(f"resume run #{origin['run']} from step {origin['step']} ({origin['checkpoint']})"))
    run.folder.declare("report", FinetuneFolder.DATA_REPORT)
    data = prepare(
        DatasetStore(run.settings),
        run.spec,
        run.folder.path,
        log,
        snapshot_id=origin.get("dataset_snapshot_id") if origin else None,
    )
    family_rows.adapt(run.family, [data.jsonl, data.eval_jsonl], log)
    return data


# -- 2. configure --------------------------------------------------------------------------------------
def configure_training(run: Setup, data: PreparedData) -> Training:
    from mixtrain.hardware import detect

    spec, ctx, folder = run.spec, run.ctx, run.folder
    t0 = time.monotonic()
    hw = detect()
    # Unique per run, even across a re-created workflow or a direct SDK call: a registered version's
    # adapter folder is never reused or wiped by a later run.
    run_tag = f"{ctx.workflow}-{ctx.number}-{uuid.uuid4().hex[:8]}"
    output_dir = run.settings.workspace / "output" / spec.output_model_name / f"run-{run_tag}"
    ds_json = (
        configure.write_deepspeed(spec.deepspeed_config, folder.deepspeed(spec.deepspeed_config))
        if spec.deepspeed_config
        else None
    )
    wandb_online = bool(spec.wandb_project and os.environ.get("WANDB_API_KEY"))
    if spec.wandb_project and not wandb_online:
        log(
            f"W&B: no WANDB_API_KEY secret — logging offline under {folder.path}/wandb (`mixtrain secret create WANDB_API_KEY ...` to sync live)"
        )
    cfg = configure.build_config(
        spec,
        run.family,
        hw,
        train_jsonl=data.jsonl,
        eval_jsonl=data.eval_jsonl,
        output_dir=output_dir,
        run_dir=folder.path,
        deepspeed_json=ds_json,
        wandb_run_name=f"{spec.output_model_name}-run{ctx.number}",
        wandb_online=wandb_online,
        warn=lambda m: log(f"warning: {m}"),
        base_config=run.base_config,
    )
    if run.origin:
        ckpt = run.origin["checkpoint"]
        if objectstore.is_remote(ckpt):  # uploaded by the run it continues (team mode): fetched once, checked
            local = objectstore.get_dir(ckpt, run.settings)
            log(f"checkpoint {ckpt} downloaded to {local}")
            ckpt = str(local)
        cfg["resume_from_checkpoint"] = ckpt  # weights, optimizer, scheduler, RNG, data position
    config_path = configure.write_yaml(cfg, folder.axolotl_config)
    folder.declare("config", FinetuneFolder.AXOLOTL_CONFIG)
    # What the training process's preflight (vlm/preflight.py) needs beyond the YAML.
    folder.preflight_request.write_text(
        json.dumps(
            {
                "id": uuid.uuid4().hex,  # the node's other training processes wait for this request's result
                "on_long_row": spec.on_long_row,
                "lora_target": configure.lora_target(spec, run.family),
                "adapter": spec.adapter,
                "full_trained": list(configure.full_trained(spec, run.family)),
                "unquantized": list(configure.unquantized(run.family)),
                "vision_tower": run.family.vision_tower,
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
    env = launch.training_env(dict(os.environ), wandb=bool(spec.wandb_project), run_dir=folder.path)
    env.pop("MIXTRAIN_RUN_ID", None)
    env.update(track_env(ctx))
    return Training(config_path, output_dir, env, hw.cuda, hw.n_gpu)


def validate_only(run: Setup, data: PreparedData, training: Training) -> FinetuneResult:
    """--dry_run: Axolotl validates the YAML and loads nothing; the data report says what would train."""
    try:
        launch.run(launch.validate_command(training.config_path), training.env, run.folder.path, log)
    finally:
        shutil.rmtree(training.output_dir, ignore_errors=True)  # validation only wrote Axolotl's debug.log there
    report = json.loads(run.folder.data_report.read_text())
    log(
        phase_line(
            f"dry run: {report['rows_used']} of {report['rows_total']} rows usable ({report['rows_bad']} unusable); "
            f"report {run.folder.data_report}; Axolotl config {training.config_path} (validated by Axolotl, not trained)"
        )
    )
    return FinetuneResult(data.snapshot_id, data.rows, str(training.config_path), dry_run=True)


# -- 3. launch -----------------------------------------------------------------------------------------
def launch_training(run: Setup, data: PreparedData, training: Training) -> int:
    """Train; returns this node's machine rank (only rank 0 registers)."""
    if gang.num_nodes() > 1:
        return launch_gang(run, data, training)
    dist = launch.distributed_from_env()
    for line in launch.banner(dist):
        log(line)
    output_dir = training.output_dir
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir(parents=True)
    layout = HF_TRAINER_FULL_CHECKPOINT if run.spec.adapter == "full" else HF_TRAINER_CHECKPOINT
    # Machine rank 0's trainer saves the checkpoints (a hand-started node of another rank only declares them).
    uploads = declare_checkpoints(run, output_dir, layout, data, upload=dist is None or dist.machine_rank == 0)
    cmd = launch.command(
        training.config_path, dist, cuda=training.cuda, n_gpu=training.n_gpu, num_processes=run.spec.num_processes
    )
    try:
        with remote.CheckpointUploader(output_dir, layout, uploads, log, run.settings) if uploads else nullcontext():
            launch.run(cmd, training.env, run.folder.path, log)
    except BaseException:
        _keep_checkpoints(output_dir, run.folder, log, f"{run.ctx.workflow} {run.ctx.number}", layout)
        raise
    if dist is not None and dist.machine_rank != 0:
        log("training finished on this node; machine rank 0 registers the model")
        return dist.machine_rank
    return 0


def launch_gang(run: Setup, data: PreparedData, training: Training) -> int:
    """`--num_nodes N` on a Ray cluster: N nodes train as one gang (vlm/gang.py); this process, rank 0's run, registers."""
    from mixtrain.workflows.redact import NAMES_VAR

    nodes = gang.num_nodes()
    log(f"🌐 Ray cluster: training on {nodes} nodes (one Ray Train worker per node, accelerate launch on each)")
    output_dir = training.output_dir
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir(parents=True)
    layout = HF_TRAINER_FULL_CHECKPOINT if run.spec.adapter == "full" else HF_TRAINER_CHECKPOINT
    uploads = declare_checkpoints(run, output_dir, layout, data)
    team: dict = {}
    if uploads:  # no shared disk assumed: the workers fetch their inputs, rank 0 uploads the checkpoints
        prefix = team_prefix(run)
        assert prefix is not None
        inputs = [training.config_path, run.folder.preflight_request, *run.folder.path.glob("deepspeed_*.json")]
        jsonls = [p for p in (data.jsonl, data.eval_jsonl) if p]
        team = {
            "inputs": remote.upload_inputs(inputs, jsonls, objectstore.join(prefix, "inputs"), run.settings),
            "checkpoints": uploads,
            "layout": asdict(layout),
            "output_dir": str(output_dir),
            "output": objectstore.join(prefix, "output"),
        }
        log(f"team mode: training inputs uploaded to {team['inputs']}; checkpoints go to {uploads}")
        if run.origin and objectstore.is_remote(run.origin["checkpoint"]):
            team["resume"] = run.origin["checkpoint"]
    secret_names = [n for n in os.environ.get(NAMES_VAR, "").split(",") if n]
    reports: list[dict] = []
    try:
        launch.run_logged(
            lambda: reports.extend(
                gang.train(
                    training.config_path,
                    training.env,
                    run.folder.path,
                    nodes,
                    run.spec.num_processes,
                    secret_names,
                    log,
                    team,
                )
            ),
            log,
        )
    except BaseException:
        _keep_checkpoints(output_dir, run.folder, log, f"{run.ctx.workflow} {run.ctx.number}", layout)
        raise
    for report in reports:
        log(gang.done_line(report))
    if team:  # rank 0's node wrote the adapter; this machine may not share its disk
        placed = remote.fetch_output(team["output"], output_dir, run.settings)
        log(f"trained output from {team['output']}: {placed} file(s) fetched (the rest were here)")
    return 0


def team_prefix(run: Setup) -> str | None:
    """``<warehouse>/runs/<run id>`` with an ``s3://`` warehouse (team mode); None on the single-machine default."""
    from mixtrain.workflows.resume import run_prefix

    if not run.settings.remote_warehouse or run.ctx.id is None:
        return None
    return run_prefix(run.settings.warehouse, run.ctx.id)


def declare_checkpoints(run: Setup, output_dir: Path, layout, data: PreparedData, upload: bool = True) -> str | None:
    """Declare where the checkpoints go; in team mode also where they are uploaded (returned), with the
    declaration itself uploaded beside them so `workflow resume` on any machine finds them."""
    prefix = team_prefix(run) if upload else None
    uploads = objectstore.join(prefix, "checkpoints") if prefix else None
    run.folder.declare_checkpoints(output_dir, layout, uploaded_to=uploads, dataset_snapshot_id=data.snapshot_id)
    if prefix:
        objectstore.put_file(run.folder.checkpoints, objectstore.join(prefix, run.folder.CHECKPOINTS), run.settings)
    return uploads


# -- 4. register ---------------------------------------------------------------------------------------
def register_adapter(run: Setup, data: PreparedData, training: Training) -> FinetuneResult:
    from mixtrain.models.registry import ModelRegistry

    ctx, output_dir = run.ctx, training.output_dir
    state = register.finalize_outputs(output_dir, full=run.spec.adapter == "full")
    report = run.folder.model_report
    trained = json.loads(report.read_text()) if report.is_file() else None
    record: dict[str, object] = {
        "workflow": ctx.workflow if ctx.id is not None else None,
        "number": ctx.number,
        "id": ctx.id,
        "config": str(training.config_path),
    }
    if run.origin:
        record["resumed_from"] = {"run": run.origin["run"], "step": run.origin["step"]}
    model = register.register_model(
        ModelRegistry(run.settings),
        spec=run.spec,
        family_name=run.family.name,
        hf_model_type=run.base_config.get("model_type"),
        output_dir=output_dir,
        snapshot_id=data.snapshot_id,
        rows=data.rows,
        state=state,
        run=record,
        eval_info={k: v for k, v in data.eval.items() if k != "held_out_rows"} if data.eval else None,
        trained=trained,
    )
    log(
        f"registered model {model['name']} version {model['version']} (train loss {model['train_loss']}) — "
        f"{'full weights' if run.spec.adapter == 'full' else 'adapter'} at {output_dir}"
    )
    return FinetuneResult(
        data.snapshot_id,
        data.rows,
        str(training.config_path),
        output_dir=str(output_dir),
        model=model["name"],
        version=model["version"],
        train_loss=model["train_loss"],
    )


# -- helpers -------------------------------------------------------------------------------------------
def check_family(family, spec) -> None:
    if family.trust_remote_code and not spec.trust_remote_code:
        raise InvalidInput(
            f"{family.description} runs model code downloaded from the model hub",
            "pass --trust_remote_code true if you trust that code",
        )
    if not family.supported:
        raise InvalidInput(
            f"{family.description} cannot be fine-tuned here: {family.unsupported_reason}",
            f"use one of: {', '.join(families.supported_names())}",
        )


def check_modes(spec: FinetuneSpec, family: families.Family, base_config: dict) -> None:
    """--adapter/--train_vision against this base model and this install, before any weight loads."""
    quant = (base_config.get("quantization_config") or {}).get("quant_method")
    if quant and spec.adapter != "lora":
        raise InvalidInput(
            f"{spec.base_model} is already quantized ({quant}): --adapter {spec.adapter} needs its unquantized weights",
            "pass the unquantized base model, or --adapter lora",
        )
    if spec.adapter == "qlora":
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise InvalidInput("--adapter qlora needs bitsandbytes, which is not installed", "pip install bitsandbytes")


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


def _keep_checkpoints(output_dir: Path, folder: FinetuneFolder, log, run: str, layout=HF_TRAINER_CHECKPOINT) -> None:
    """A failed training keeps its checkpoints (to resume) and drops the rest; Axolotl's debug log moves to the run folder."""
    debug = output_dir / "debug.log"
    if debug.is_file():
        shutil.move(str(debug), str(folder.axolotl_debug))
    kept = layout.checkpoints(output_dir)
    if not kept:
        shutil.rmtree(output_dir, ignore_errors=True)
        return
    for p in output_dir.iterdir():
        if p not in kept:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    log(f"kept {len(kept)} checkpoint(s) in {output_dir} — continue with `mixtrain workflow resume {run}`")
