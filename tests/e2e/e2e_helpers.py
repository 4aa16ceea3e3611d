"""E2E helpers: the real CLI in an isolated home, and small colour-task datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")


class Env:
    """A MIXTRAIN_HOME with the spec's workflow registered; `mix(...)` runs the real CLI there."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        # One torch thread: tiny models train and generate several times faster that way on 2 cores,
        # and a single-threaded CPU run is reproducible (the learning test's accuracy does not wander).
        self.env = dict(
            os.environ,
            MIXTRAIN_HOME=str(self.home),
            COLUMNS="200",
            NO_COLOR="1",
            PATH=f"{BIN}:{os.environ['PATH']}",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        from mixtrain.hardware import DIST_VARS

        for key in (*DIST_VARS, "MIXTRAIN_DATABASE_URL", "MIXTRAIN_CATALOG_URL"):
            self.env.pop(key, None)

    def mix(self, *args, env: dict | None = None, cwd=None, timeout=900, check=None):
        proc = subprocess.run(
            [str(BIN / "mixtrain"), *map(str, args)],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=cwd or self.root,
            timeout=timeout,
        )
        if check is not None:
            assert proc.returncode == check, (
                f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
        return proc

    def json(self, *args):
        return json.loads(self.mix(*args, "--json", check=0).stdout)

    def last_run(self, workflow="vlm-finetune") -> dict:
        return self.json("workflow", "runs", workflow, "-n", "1")[0]

    def run_log(self, workflow="vlm-finetune", number: int | None = None) -> str:
        """The run's full log (an attached run shows a compact view; the trainer's output is only here)."""
        number = number or self.last_run(workflow)["number"]
        return self.mix("workflow", "logs", workflow, str(number), check=0).stdout


def colour_dataset(env: Env, name: str, n: int = 16, size: int = 64) -> Path:
    from mixtrain.testing.colour_task import make_task

    info = make_task(env.root / f"task-{name}", n_train=n, n_test=4, size=size)
    env.mix("dataset", "create", name, "--file", info["train_csv"], check=0)
    return info["train_csv"]
