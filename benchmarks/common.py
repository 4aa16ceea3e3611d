"""Shared by the benchmark scripts: where things are, an offline environment, a timed command."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mixtrain.hardware import DIST_VARS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MIXTRAIN = str(BIN / "mixtrain")
EXAMPLES = REPO / "src" / "mixtrain" / "examples"


def bench_env(home: Path) -> dict:
    """A fresh MIXTRAIN_HOME, no distributed variables, nothing phoning home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXTRAIN_") and k not in DIST_VARS}
    env.update(
        MIXTRAIN_HOME=str(home),
        HF_HUB_OFFLINE="1",
        AXOLOTL_DO_NOT_TRACK="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
        TOKENIZERS_PARALLELISM="false",
        WANDB_MODE="disabled",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
        NO_COLOR="1",
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
    )
    return env


def timed(cmd, env, cwd=None) -> tuple[float, subprocess.CompletedProcess]:
    """Run a whole command; its wall time, or exit with its output when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return took, proc


def workspace(prefix: str, threads: int = 0) -> tuple[Path, dict]:
    """A temporary folder with a fresh home inside, and the environment for every timed command."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    env = bench_env(tmp / "home")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return tmp, env
