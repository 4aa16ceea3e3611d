"""Shared fixtures: an isolated MIXTRAIN_HOME, the real CLI as a subprocess, a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Nothing in the test suite may phone home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "offline",
    "DO_NOT_TRACK": "1",
}
os.environ.update(OFFLINE_ENV)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MIXTRAIN_HOME", str(h))
    for key in ("MIXTRAIN_DATABASE_URL", "MIXTRAIN_CATALOG_URL", "MIXTRAIN_WAREHOUSE"):
        monkeypatch.delenv(key, raising=False)
    return h


class CLI:
    """Runs the installed `mixtrain` entry point, exactly as a user would."""

    def __init__(self, env: dict, cwd: Path):
        self.env, self.cwd = env, cwd

    def __call__(self, *args, input: str | None = None, timeout: float = 600, cwd=None, check=None):
        proc = subprocess.run(
            [str(BIN / "mixtrain"), *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd or self.cwd,
            timeout=timeout,
        )
        if check is not None:
            assert proc.returncode == check, (
                f"exit {proc.returncode} != {check}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


@pytest.fixture
def mix(home, tmp_path) -> CLI:
    env = dict(os.environ, MIXTRAIN_HOME=str(home), COLUMNS="200", NO_COLOR="1")
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return CLI(env, tmp_path)


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server on loopback (started by scripts/pg_server.sh), or MIXTRAIN_TEST_PG_URL."""
    if os.environ.get("MIXTRAIN_TEST_PG_URL"):
        yield os.environ["MIXTRAIN_TEST_PG_URL"]
        return
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="mixtrain-pg-"))  # not under pytest's 0700 tmp: the server runs as 'postgres'
    d.chmod(0o755)
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/pg_server.sh"), "start", str(d)], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        why = f"PostgreSQL could not start: {proc.stderr.strip()[-300:]}"
        if os.environ.get("CI"):  # CI installs and starts it: a green run without these tests would lie
            pytest.fail(why)
        pytest.skip(why)
    yield proc.stdout.strip()
    subprocess.run(["bash", str(REPO / "scripts/pg_server.sh"), "stop", str(d)], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the test server for each test."""
    from sqlalchemy import create_engine, text

    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return pg_server.rsplit("/", 1)[0] + "/" + name


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
