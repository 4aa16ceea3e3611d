"""A multi-node fine-tune on a Ray cluster: a Ray Train gang of our own per-node launches.

`workflow run vlm-finetune ... --num_nodes N` (team mode) runs the recipe once, in the run's Ray job:
prepare and configure happen there; then instead of launching Axolotl locally, ``train`` gangs N Ray
Train workers — ``ScalingConfig(num_workers=N, use_gpu=<GPUs present>, placement_strategy="STRICT_SPREAD")``,
one per node with all its GPUs — and each worker runs the same per-node launch a hand-started node runs
(``launch.command``: ``accelerate launch --num_machines N --machine_rank R ...``) as a subprocess, with
Ray's ``MASTER_ADDR`` and a fresh port that rank 0 picks and broadcasts over Ray's gloo process group.
Rank 0 of the gang writes the adapter; the run (rank 0 of the job) registers it.

Each node reports back how it ended, and the run log names every node that trained. A node that fails
(its trainer exits, its worker is killed) fails the whole gang with that node's reason.

Tried and not used: Axolotl's own ``use_ray`` — it hard-codes ``use_gpu=True`` and one GPU per worker
(it waits forever on CPU), has no placement strategy, and installs a SIGINT handler that fails off the
main thread. Running the whole workflow on every node (today's hand-started contract) would prepare the
data N times; preparing once and launching N times is what the subprocess form allows.

The training environment crosses to the workers without secret values (Ray Train keeps the loop's
config where the dashboard can show it): each worker reads the secrets from the store itself.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from mixtrain.errors import InvalidInput, TrainingFailed

NODE_DONE = "node {rank} of {world} (rank {first} of {procs}) finished"


def num_nodes() -> int:
    """How many nodes this run's training gangs (``MIXTRAIN_NUM_NODES``, set by the run's Ray job); 1 = local launch."""
    try:
        return max(1, int(os.environ.get("MIXTRAIN_NUM_NODES", "1")))
    except ValueError:
        return 1


def train(
    config_path: Path,
    env: dict,
    cwd: Path,
    nodes: int,
    num_processes: int,
    secret_names: list[str],
    log,
    remote: dict | None = None,
) -> list[dict]:
    """Train on ``nodes`` Ray nodes; returns each node's report (rank order). Raises TrainingFailed with the failing node's reason.

    ``remote`` (an ``s3://`` warehouse; URIs only, no secret): ``inputs`` — the uploaded config, rows and
    images each worker fetches first (``vlm.remote``); ``resume`` — the checkpoint each worker downloads
    (to the cache path the config names); ``checkpoints`` + ``layout`` — where rank 0 uploads each
    complete checkpoint while it trains."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", logging_level=logging.WARNING, log_to_driver=True)
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) < nodes:
        raise InvalidInput(
            f"--num_nodes {nodes}: the Ray cluster has {len(alive)} live node(s)",
            f"add nodes to the cluster or pass --num_nodes {len(alive)}",
        )
    gpus = int(min(n.get("Resources", {}).get("GPU", 0) for n in alive))
    per_worker = {"GPU": gpus} if gpus else {"CPU": 1}
    log(f"gang: {nodes} Ray nodes, one worker each ({f'{gpus} GPU(s)' if gpus else 'CPU, gloo'}), STRICT_SPREAD")
    safe_env = {k: v for k, v in env.items() if k not in set(secret_names)}
    from ray.util.queue import Queue

    # Each node reports how it ended here (Ray Train keeps no metrics-only report).
    done = Queue(actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        _node_main,
        train_loop_config={
            "config": str(config_path),
            "cwd": str(cwd),
            "env": safe_env,
            "num_processes": num_processes,
            "home": os.environ.get("MIXTRAIN_HOME", ""),
            "done": done,
            "remote": remote or {},
        },
        scaling_config=ScalingConfig(
            num_workers=nodes, use_gpu=bool(gpus), placement_strategy="STRICT_SPREAD", resources_per_worker=per_worker
        ),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(
            name=f"mixtrain-{Path(cwd).parent.name}-{Path(cwd).name}",
            storage_path=str(Path(cwd) / "ray_train"),
            failure_config=FailureConfig(max_failures=0),  # a failed node fails the run; `workflow resume` continues
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # Ray's TrainingFailedError (or a worker-group error): say which node and why
        raise TrainingFailed(f"the {nodes}-node training failed: {_failure(exc)}", _FIX) from None
    reports = [done.get(timeout=10) for _ in range(done.qsize())]
    done.shutdown()
    return sorted(reports, key=lambda r: r["rank"])


def done_line(report: dict) -> str:
    """What the run log says of a node that trained: ``node 1 of 2 (rank 1 of 2) finished — Ray node ... at IP``."""
    return NODE_DONE.format(**report) + f" — Ray node {report['node_id'][:12]} at {report['ip']}"


_FIX = "see the run log for each node's output; `mixtrain workflow resume` continues from the last checkpoint"


def _failure(exc: BaseException) -> str:
    """The failing worker's own error, first line, without Ray's wrapping."""
    causes = []
    for attr in ("worker_failures", "errors"):
        found = getattr(exc, attr, None)
        if isinstance(found, dict):
            causes += [f"node {rank}: {_first_line(e)}" for rank, e in sorted(found.items())]
    if causes:
        return "; ".join(causes)
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = next((ln for ln in lines if "TrainingFailed" in ln or "exited with code" in ln or "died" in ln), None)
    return (text or (lines[0] if lines else type(exc).__name__))[:600]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _node_main(cfg: dict) -> None:
    """One node of the gang (a Ray Train worker): run the per-node launch as a subprocess, report how it ended."""
    import ray
    import torch.distributed as dist

    from mixtrain.hardware import detect
    from mixtrain.vlm import launch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    port = [_free_port() if rank == 0 else 0]
    dist.broadcast_object_list(port, src=0)  # a fresh rendezvous port, chosen by rank 0 on its own node
    master = os.environ["MASTER_ADDR"]
    node_id = ray.get_runtime_context().get_node_id()
    print(
        f"node {rank} of {world}: Ray node {node_id[:12]}, worker pid {os.getpid()}, master {master}:{port[0]}",
        flush=True,
    )
    hw = detect()
    per_node = cfg["num_processes"] or (hw.n_gpu if hw.cuda else 1)
    where = launch.Distributed(master, int(port[0]), rank, world, 0)
    cmd = launch.command(Path(cfg["config"]), where, cuda=hw.cuda, n_gpu=hw.n_gpu, num_processes=cfg["num_processes"])
    env = {**cfg["env"], **_secrets(cfg["home"])}
    remote = cfg.get("remote") or {}
    with _team_mode(remote, rank, world, Path(cfg["cwd"])):
        # raises TrainingFailed with the trainer's last line
        launch._run(cmd, env, Path(cfg["cwd"]), on_start=_watchdog)
    if rank == 0 and remote.get("output"):  # the trainer wrote the adapter on this node: the run registers it
        from mixtrain.settings import load_settings
        from mixtrain.vlm.remote import upload_output

        uploaded = upload_output(Path(remote["output_dir"]), remote["output"], load_settings())
        print(f"node 0 of {world}: trained output uploaded to {uploaded}", flush=True)
    report = {
        "rank": rank,
        "world": world,
        "first": rank * per_node,
        "procs": world * per_node,
        "node_id": node_id,
        "ip": ray.util.get_node_ip_address(),
    }
    cfg["done"].put(report)


def _team_mode(remote: dict, rank: int, world: int, cwd: Path):
    """Before training: this node's inputs and resume checkpoint from the object store; during it (rank 0):
    each complete checkpoint uploaded. A context manager; a no-op without ``remote`` (a local warehouse)."""
    import contextlib

    if not remote:
        return contextlib.nullcontext()
    from mixtrain import objectstore
    from mixtrain.settings import load_settings
    from mixtrain.vlm import remote as team
    from mixtrain.workflows.runfolder import CheckpointLayout

    settings = load_settings()
    if remote.get("inputs"):
        placed = team.fetch_inputs(remote["inputs"], settings)
        print(f"node {rank} of {world}: inputs from {remote['inputs']} ({placed} file(s) placed here)", flush=True)
    cwd.mkdir(parents=True, exist_ok=True)
    if remote.get("resume"):
        local = objectstore.get_dir(remote["resume"], settings)
        print(f"node {rank} of {world}: checkpoint {remote['resume']} in {local}", flush=True)
    if rank != 0 or not remote.get("checkpoints"):
        return contextlib.nullcontext()
    output_dir = Path(remote["output_dir"])
    return team.CheckpointUploader(
        output_dir, CheckpointLayout.from_json(remote["layout"]), remote["checkpoints"], _say, settings
    )


def _say(msg: str) -> None:
    print(msg, flush=True)


def _watchdog(proc) -> None:
    """The node's trainers die with this Ray worker, however it ends.

    Ray kills a failed gang's workers (and a killed worker is just gone): without this their
    ``accelerate launch`` and its training processes would live on as orphans — and, in step with the
    other node's orphans, train to the end. The trainer leads a process group of its own; a small
    watcher in its own session ends that group once this worker is gone (Ray's job supervisor watches
    a job's driver the same way).
    """
    import subprocess

    subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 -{proc.pid} 2>/dev/null; do sleep 1; done; "
            f"kill -9 -{proc.pid} 2>/dev/null",
        ],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _secrets(home: str) -> dict[str, str]:
    """The run's secrets, read on this node from the store (they never cross Ray's control plane)."""
    from mixtrain.secrets.store import SecretStore
    from mixtrain.settings import load_settings

    if home:
        os.environ["MIXTRAIN_HOME"] = home
    return SecretStore(load_settings()).environment()
