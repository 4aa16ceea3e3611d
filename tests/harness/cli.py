"""The real `mixtrain` CLI as a child process, in a home of its own (one runner for every test folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = REPO / "src" / "mixtrain" / "examples"

# Nothing in the test suite may phone home (the root conftest puts these in os.environ).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "offline",
    "DO_NOT_TRACK": "1",
}
# Settings that point a process at other stores: a test's home must be its own.
STORE_VARS = (
    "MIXTRAIN_DATABASE_URL",
    "MIXTRAIN_CATALOG_URL",
    "MIXTRAIN_WAREHOUSE",
    "MIXTRAIN_S3_ENDPOINT",
    "MIXTRAIN_S3_REGION",
    "MIXTRAIN_RAY_ADDRESS",
)


def _inherited(key: str) -> bool:
    from mixtrain.hardware import DIST_VARS

    if key in DIST_VARS:
        return False
    # Every mixtrain setting is the test's to choose, except the documented escape hatch and test knobs.
    return not key.startswith("MIXTRAIN_") or key == "MIXTRAIN_LEAN_IMPORTS" or key.startswith("MIXTRAIN_TEST_")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI child: this one, minus other stores and distributed variables, plus the home.

    One torch thread: tiny models train and generate several times faster that way on 2 cores, and a
    single-threaded CPU run is reproducible (the learning test's accuracy does not wander).
    """
    env = {k: v for k, v in os.environ.items() if _inherited(k)}
    env.update(
        OFFLINE_ENV,
        MIXTRAIN_HOME=str(home),
        COLUMNS="200",
        NO_COLOR="1",
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.update(extra)
    return env


class Mix:
    """Runs the installed `mixtrain` entry point exactly as a user would, in ``home``; ``root`` is the cwd.

    ``mix(*args, check=0)`` asserts the exit code (printing the output when it differs); ``mix.mix`` is the
    same call (the e2e tests' spelling); ``json``, ``last_run`` and ``run_log`` read what the CLI prints.
    """

    def __init__(self, root: Path, home: Path | None = None, env: dict | None = None):
        self.root = Path(root)
        self.home = Path(home) if home is not None else self.root / "home"
        self.env = env if env is not None else cli_env(self.home)

    @property
    def cwd(self) -> Path:
        return self.root

    def __call__(
        self,
        *args,
        input: str | None = None,
        timeout: float = 900,
        cwd=None,
        check: int | None = None,
        env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(BIN / "mixtrain"), *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=cwd or self.root,
            timeout=timeout,
        )
        if check is not None:
            assert proc.returncode == check, (
                f"exit {proc.returncode} != {check}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
        return proc

    mix = __call__

    def json(self, *args):
        return json.loads(self(*args, "--json", check=0).stdout)

    def last_run(self, workflow: str = "vlm-finetune") -> dict:
        return self.json("workflow", "runs", workflow, "-n", "1")[0]

    def run_log(self, workflow: str = "vlm-finetune", number: int | None = None) -> str:
        """The run's full log (an attached run shows a compact view; the trainer's output is only here)."""
        number = number or self.last_run(workflow)["number"]
        return self("workflow", "logs", workflow, str(number), check=0).stdout

    def register_finetune(self, name: str = "vlm-finetune") -> None:
        """Register the spec's fine-tune workflow (the example file) under ``name``."""
        self(
            "workflow",
            "create",
            "axolotl_vlm_finetune.py",
            "--name",
            name,
            "--description",
            "Fine-tune VLMs with Axolotl",
            cwd=EXAMPLES,
            check=0,
        )


@contextmanager
def home_env(home: Path) -> Iterator[None]:
    """MIXTRAIN_HOME (and no other store) for an in-process client while the block runs."""
    saved = {k: os.environ.get(k) for k in ("MIXTRAIN_HOME", *STORE_VARS)}
    os.environ["MIXTRAIN_HOME"] = str(home)
    for k in STORE_VARS:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
