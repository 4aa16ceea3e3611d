"""Step 3 — launch Axolotl: one process, or ``accelerate launch`` across nodes.

Contract for multi-node training (one workflow process per node, started by your scheduler):
  MASTER_ADDR   address of the node with machine rank 0 (its presence selects distributed mode)
  MASTER_PORT   rendezvous port (default 29500)
  RANK          this node's machine rank (NODE_RANK wins when both are set)
  WORLD_SIZE    number of nodes (NUM_NODES wins when both are set)
  LOCAL_RANK    shown for information; accelerate assigns local ranks to the processes it starts
Each node runs ``num_processes`` training processes (default: one per local GPU; on CPU, 1 unless
set). Training runs through ``mixtrain.vlm.axolotl_main``, which calls Axolotl's own train entry
after validating the config in the same interpreter (so Axolotl is imported once).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixtrain.errors import InvalidInput, TrainingFailed, TrainingOutOfMemory
from mixtrain.hardware import DIST_VARS
from mixtrain.workflows.progress import SECTION_BEGIN, SECTION_END

__all__ = ["DIST_VARS"]  # one list for the whole project, re-exported for launch's callers

OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "CUBLAS_STATUS_ALLOC_FAILED")
OOM_REMEDIES = "try, one at a time: --batch_size 1, --deepspeed_config zero3, --max_seq_length 1024, --lora_r 32"


@dataclass(frozen=True)
class Distributed:
    master_addr: str
    master_port: int
    machine_rank: int
    num_machines: int
    local_rank: int


def distributed_from_env(env=os.environ) -> Distributed | None:
    if not env.get("MASTER_ADDR"):
        return None
    return Distributed(
        master_addr=env["MASTER_ADDR"],
        master_port=_env_int(env, ("MASTER_PORT",), 29500),
        machine_rank=_env_int(env, ("NODE_RANK", "RANK"), 0),
        num_machines=_env_int(env, ("NUM_NODES", "WORLD_SIZE"), 1),
        local_rank=_env_int(env, ("LOCAL_RANK",), 0),
    )


def _env_int(env, names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` that is set, as an integer; a malformed value is the user's mistake, not a traceback."""
    for name in names:
        if env.get(name):
            try:
                return int(env[name])
            except ValueError:
                raise InvalidInput(
                    f"environment variable {name}={env[name]!r} is not an integer",
                    f"set {name} to a whole number or unset it",
                ) from None
    return default


def banner(dist: Distributed | None) -> list[str]:
    if dist is None:
        return ["🖥️  Single GPU mode - running without distributed setup"]
    return [
        "🌐 Detected distributed environment - using accelerate launch",
        f"  MASTER_ADDR: {dist.master_addr}",
        f"  RANK: {dist.machine_rank}",
        f"  WORLD_SIZE: {dist.num_machines}",
        f"  LOCAL_RANK: {dist.local_rank}",
    ]


def command(config: Path, dist: Distributed | None, *, cuda: bool, n_gpu: int, num_processes: int) -> list[str]:
    entry = ["-m", "mixtrain.vlm.axolotl_main", "train", str(config)]
    if dist is None:
        return [sys.executable, *entry]
    per_node = num_processes or (n_gpu if cuda else 1)
    total = per_node * dist.num_machines
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_machines",
        str(dist.num_machines),
        "--machine_rank",
        str(dist.machine_rank),
        "--main_process_ip",
        dist.master_addr,
        "--main_process_port",
        str(dist.master_port),
        "--num_processes",
        str(total),
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",
    ]
    if total > 1:
        cmd.append("--multi_gpu")  # accelerate's name for multi-process DDP; gloo on CPU
    elif not cuda:
        cmd.append("--cpu")
    return cmd + entry


def validate_command(config: Path) -> list[str]:
    """Axolotl's own config validation, without training (``--dry_run``)."""
    return [sys.executable, "-m", "mixtrain.vlm.axolotl_main", "validate", str(config)]


def training_env(base: dict, *, wandb: bool, run_dir: Path) -> dict:
    env = {k: v for k, v in base.items() if k not in DIST_VARS}
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")  # Axolotl's telemetry otherwise retries and can hang offline
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    env["WANDB_DIR"] = str(run_dir)
    if not wandb:
        env["WANDB_MODE"] = "disabled"
    return env


def run(cmd: list[str], env: dict, cwd: Path, log=print) -> None:
    """Stream the trainer's output into our log between section markers; on failure raise with its last lines.

    The markers let an attached terminal hide the trainer's verbose stream (mixtrain.workflows.progress).
    """
    log(SECTION_BEGIN)
    try:
        _run(cmd, env, cwd)
    finally:
        log(SECTION_END)


def run_logged(train, log=print) -> None:
    """Call ``train()`` between the same section markers as ``run`` (the gang's nodes stream the trainer's output)."""
    log(SECTION_BEGIN)
    try:
        train()
    finally:
        log(SECTION_END)


def _run(cmd: list[str], env: dict, cwd: Path, on_start=None) -> None:
    """``on_start(proc)``: called once the trainer started in a process group of its own (the Ray gang's watchdog)."""
    tail: collections.deque[str] = collections.deque(maxlen=40)
    env = {
        **env,
        "PYTHONUNBUFFERED": "1",
    }  # else a traceback (stderr) overtakes buffered stdout and the "last line" is wrong
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=on_start is not None,
    )
    if on_start is not None:
        on_start(proc)
    assert proc.stdout is not None
    stdout: Any = proc.stdout  # a BufferedReader: read1 returns what is there without waiting for 64 KiB
    out = sys.stdout.buffer
    partial = b""
    for chunk in iter(lambda: stdout.read1(65536), b""):  # chunks, not lines: progress bars use \r
        out.write(chunk)
        out.flush()
        *lines, partial = (partial + chunk).replace(b"\r", b"\n").split(b"\n")
        tail.extend(line.decode(errors="replace") for line in lines if line.strip())
    if partial.strip():
        tail.append(partial.decode(errors="replace"))
    code = proc.wait()
    if code == 0:
        return
    text = "\n".join(tail)
    if any(m in text for m in OOM_MARKERS):
        raise TrainingOutOfMemory("training ran out of GPU memory", OOM_REMEDIES)
    last = next(
        (line for line in reversed(tail) if line.strip() and not line.startswith(("  ", "\t", "[rank"))), None
    ) or (tail[-1] if tail else "")
    raise TrainingFailed(
        f"Axolotl training exited with code {code}: {last.strip()[:500]}",
        "see the run log above for the full trainer output",
    )
