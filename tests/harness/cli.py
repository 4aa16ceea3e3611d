"""The real `mixtrain` CLI as a child process, in a home of its own (one runner for every test folder).

Each call is a process of its own. By default it is forked from a server that imported the CLI once
(``harness.forkserver``): the child replaces its environment, cwd and fds 0/1/2 and runs the entry point's
``main()``, so a test sees what a `mixtrain` process does (its output, exit code, what it stored, its
children) without paying ~0.5-1 s of interpreter start-up and imports per call. The installed `mixtrain`
binary runs instead for what needs a fresh interpreter: ``Mix(..., real=True)`` or ``mix(..., real=True)``,
commands that load models or start servers (``REAL_COMMANDS``), calls whose environment changes what the
server imported with (``IMPORT_TIME_ENV``), and everything when ``MIXTRAIN_TEST_REAL_CLI=1``.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
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


def cli_env(home: Path, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI child: this one (or ``base``), minus other stores and distributed variables,
    plus the home.

    One torch thread: tiny models train and generate several times faster that way on 2 cores, and a
    single-threaded CPU run is reproducible (the learning test's accuracy does not wander).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if _inherited(k)}
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


# Commands whose process loads torch/transformers or serves: they run the real binary (a fresh interpreter).
REAL_COMMANDS = {("model", "run"), ("model", "export"), ("model", "serve"), ("ui",)}
# Environment read when the fork server imported its modules (rich's console, the interpreter itself,
# PyIceberg's config): a call that sets one differently runs the real binary.
IMPORT_TIME_ENV = {
    "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM", "COLORTERM", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
    "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME",
}  # fmt: skip
IMPORT_TIME_PREFIXES = ("PYTHON", "PYICEBERG_")


def _import_time_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in IMPORT_TIME_ENV or k.startswith(IMPORT_TIME_PREFIXES)}


class _ForkServer:
    """The session's one fork server (started on first use, stopped at exit; restarted if it died)."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.dir = ""
        self.env: dict[str, str] = {}
        self.lock = threading.Lock()

    def ensure(self) -> str:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.dir = tempfile.mkdtemp(prefix="mixtrain-fork-")
                sock = os.path.join(self.dir, "s")
                self.env = self.env or cli_env(Path(self.dir) / "home")
                self.proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("forkserver.py")), sock],
                    env=self.env,
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert self.proc.stdout is not None
                if self.proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("the CLI fork server did not start")
                atexit.register(self.stop)
            return os.path.join(self.dir, "s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def compatible(self, env: dict[str, str]) -> bool:
        """Whether a call with ``env`` reads as it would in a fresh interpreter (the server's environment
        is this process's CLI environment when it starts, as ``cli_env`` makes it)."""
        self.env = self.env or cli_env(Path(tempfile.gettempdir()) / "mixtrain-fork-home")
        return _import_time_env(env) == _import_time_env(self.env)


_SERVER = _ForkServer()


def _forked(argv: list[str], env: dict[str, str], cwd: Path, input: str | None, timeout: float):
    """Run ``argv`` as a child of the fork server; a ``subprocess.CompletedProcess`` like ``subprocess.run``'s."""
    sock_path = _SERVER.ensure()
    with tempfile.TemporaryDirectory(prefix="mixtrain-call-") as d:
        files = {k: os.path.join(d, k) for k in ("stdin", "stdout", "stderr")}
        Path(files["stdin"]).write_text(input or "")
        for k in ("stdout", "stderr"):
            Path(files[k]).touch()
        req = {"argv": argv, "env": env, "cwd": str(cwd), **files}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(sock_path)
            conn.sendall(json.dumps(req).encode() + b"\n")
            conn.settimeout(timeout)
            reader = conn.makefile("r")
            pid = json.loads(reader.readline())["pid"]
            try:
                line = reader.readline()
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                conn.settimeout(60)
                reader.readline()
                raise subprocess.TimeoutExpired(argv, timeout, Path(files["stdout"]).read_text()) from None
        if not line:
            raise RuntimeError(f"the CLI fork server died while running {argv}")
        rc = json.loads(line)["rc"]
        out, err = (Path(files[k]).read_text(errors="replace") for k in ("stdout", "stderr"))
    return subprocess.CompletedProcess(argv, rc, out, err)


def _real_cli_only() -> bool:
    return os.environ.get("MIXTRAIN_TEST_REAL_CLI", "") not in ("", "0")


class Mix:
    """Runs the `mixtrain` entry point as a user would, each call a process of its own, in ``home``;
    ``root`` is the cwd. ``real=True`` (here or per call) runs the installed binary (see the module doc).

    ``mix(*args, check=0)`` asserts the exit code (printing the output when it differs); ``mix.mix`` is the
    same call (the e2e tests' spelling); ``json``, ``last_run`` and ``run_log`` read what the CLI prints.
    """

    def __init__(self, root: Path, home: Path | None = None, env: dict | None = None, real: bool = False):
        self.root = Path(root)
        self.home = Path(home) if home is not None else self.root / "home"
        self.env = env if env is not None else cli_env(self.home)
        self.real = real

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
        real: bool | None = None,
    ) -> subprocess.CompletedProcess:
        argv = [str(BIN / "mixtrain"), *map(str, args)]
        full_env = {**self.env, **(env or {})}
        if self._real(argv[1:], full_env, real):
            proc = subprocess.run(
                argv, input=input, capture_output=True, text=True, env=full_env, cwd=cwd or self.root, timeout=timeout
            )
        else:
            proc = _forked(argv, full_env, Path(cwd or self.root), input, timeout)
        if check is not None:
            assert proc.returncode == check, (
                f"exit {proc.returncode} != {check}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
        return proc

    mix = __call__

    def _real(self, args: list[str], env: dict[str, str], real: bool | None) -> bool:
        if real is not None:
            return real
        if self.real or _real_cli_only():
            return True
        nouns = [a for a in args if not a.startswith("-")]
        if tuple(nouns[:2]) in REAL_COMMANDS or tuple(nouns[:1]) in REAL_COMMANDS:
            return True
        return not _SERVER.compatible(env)

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
