"""§6: corrupt or missing state is never silently a fresh install; `mixtrain doctor [--fix]`; odd homes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.faults import clean_error, files_under

FLOW = """
import time
from mixtrain import MixFlow

class Hello(MixFlow):
    def run(self, seconds: float = 0.0):
        print("hello", flush=True)
        time.sleep(seconds)
        return "hi"
"""


def populate(cli) -> None:
    (cli.root / "d.csv").write_text("image,text\na.png,first\nb.png,second\n")
    (cli.root / "hello.py").write_text(FLOW)
    cli("dataset", "create", "pets", str(cli.root / "d.csv"), check=0)
    cli("workflow", "create", str(cli.root / "hello.py"), "--name", "hello", check=0)
    cli("secret", "set", "API_TOKEN", input="tok-123456", check=0)
    cli("workflow", "run", "hello", check=0)


def _truncate(p: Path):
    for side in (p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm")):
        side.unlink(missing_ok=True)
    p.write_bytes(b"")


def _garble(p: Path):
    with open(p, "r+b") as fh:
        fh.write(b"this is not SQLite" * 8)


LOST = {
    # case: (break it, command that must refuse, words of its error)
    "metadata db truncated": (
        lambda h: _truncate(h / "mixtrain.db"),
        ["workflow", "list"],
        "mixtrain.db is empty (0 bytes)",
    ),
    "metadata db deleted": (lambda h: (h / "mixtrain.db").unlink(), ["secret", "list"], "mixtrain.db is missing"),
    "metadata db garbled": (
        lambda h: _garble(h / "mixtrain.db"),
        ["workflow", "runs", "hello"],
        "mixtrain.db is corrupt",
    ),
    "catalog truncated": (lambda h: _truncate(h / "catalog.db"), ["dataset", "list"], "catalog.db is empty (0 bytes)"),
    "catalog and marker deleted": (
        lambda h: [(h / n).unlink() for n in ("catalog.db", "catalog.db.initialized")],
        ["dataset", "list"],
        "warehouse holds 1 table(s)",
    ),
    "catalog garbled": (lambda h: _garble(h / "catalog.db"), ["dataset", "head", "pets"], "catalog.db is corrupt"),
    "secret key garbage": (
        lambda h: (h / "secret.key").write_text("garbage"),
        ["secret", "get", "API_TOKEN", "--show"],
        "secret.key does not hold a valid key",
    ),
    "secret key empty": (
        lambda h: (h / "secret.key").write_text(""),
        ["secret", "get", "API_TOKEN", "--show"],
        "secret.key is empty",
    ),
}


@pytest.mark.parametrize("case", list(LOST))
def test_lost_or_corrupt_state_is_refused_not_a_fresh_install(fmix, case):
    populate(fmix)
    breaker, cmd, needle = LOST[case]
    breaker(fmix.home)
    before = files_under(fmix.home / "warehouse")
    clean_error(fmix(*cmd), needle)
    # a create must not start afresh over the old state either
    if "secret" in case:
        clean_error(fmix("secret", "set", "OTHER", input="value-1234"), needle)
    else:
        clean_error(fmix("dataset", "create", "pets", str(fmix.root / "d.csv")), needle)
        assert files_under(fmix.home / "warehouse") == before
    doc = fmix("doctor")
    assert doc.returncode == 1 and "Traceback" not in doc.stdout + doc.stderr, doc.stdout + doc.stderr
    assert "✖" in doc.stdout


def test_home_is_a_file(fmix, tmp_path):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    fmix.env["MIXTRAIN_HOME"] = str(f)
    for cmd in (["dataset", "list"], ["workflow", "list"], ["doctor"]):
        clean_error(fmix(*cmd), "is a file, not a folder")
    assert f.read_text() == "x"


def test_read_only_home_reads_work_writes_say_read_only(fmix, tmpfs):
    mnt = tmpfs("64m")
    fmix.env["MIXTRAIN_HOME"] = str(mnt / "home")
    fmix.home = mnt / "home"
    populate(fmix)
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    assert "pets" in fmix("dataset", "list", check=0).stdout
    assert "second" in fmix("dataset", "head", "pets", check=0).stdout
    assert json.loads(fmix("workflow", "runs", "hello", "--json", check=0).stdout)[0]["status"] == "completed"
    assert "hello" in fmix("workflow", "logs", "hello", "1", check=0).stdout
    assert fmix("secret", "get", "API_TOKEN", "--show", check=0).stdout.strip().endswith("tok-123456")
    for cmd, stdin in (
        (["dataset", "create", "more", str(fmix.root / "d.csv")], None),
        (["secret", "set", "NEW"], "value-1234"),
        (["workflow", "run", "hello"], None),
        (["dataset", "append", "pets", str(fmix.root / "d.csv")], None),
    ):
        clean_error(fmix(*cmd, input=stdin), "read-only")
    doc = fmix("doctor")
    assert "read-only" in doc.stdout and "Traceback" not in doc.stdout + doc.stderr


def test_doctor_on_a_healthy_home_is_quiet(fmix):
    assert fmix("doctor", check=0).stdout.count("✔") >= 1  # a fresh home
    populate(fmix)
    out = fmix("doctor", check=0).stdout
    assert "✖" not in out and "passes SQLite's integrity check" in out


def test_doctor_removes_orphans_but_never_a_fresh_or_referenced_file(fmix):
    populate(fmix)
    table_dir = next((fmix.home / "warehouse" / "mixtrain").iterdir())
    kept = files_under(fmix.home / "warehouse")
    old_stray = table_dir / "data" / "00000-0-deadbeef.parquet"
    old_dir = fmix.home / "warehouse" / "mixtrain" / "ghost.0123456789ab" / "data" / "x.parquet"
    old_dir.parent.mkdir(parents=True)
    for p in (old_stray, old_dir):
        p.write_bytes(b"PAR1")
        os.utime(p, (1, 1))  # long ago
    fresh = table_dir / "data" / "00000-0-inflight.parquet"
    fresh.write_bytes(b"PAR1")  # a write in flight: younger than the age guard

    report = fmix("doctor")
    assert report.returncode == 1 and "2 orphan file(s)" in report.stdout, report.stdout
    fmix("doctor", "--fix", check=0)
    assert not old_stray.exists() and not old_dir.exists() and not old_dir.parent.parent.exists()
    assert fresh.exists(), "the age guard must protect a write in flight"
    assert files_under(fmix.home / "warehouse") == kept | {str(fresh.relative_to(fmix.home / "warehouse"))}
    assert "second" in fmix("dataset", "head", "pets", check=0).stdout
    fresh.unlink()


def test_doctor_fails_runs_stuck_as_running(fmix):
    import signal

    from harness import gone, registry, wait_for

    populate(fmix)
    fmix("workflow", "run", "hello", "--seconds", "60", "-d", check=0)
    reg = registry(fmix)
    run = wait_for(
        lambda: (r := reg.runs("hello", 1)[0])["status"] == "running" and r["worker_pid"] and r, what="running"
    )
    os.killpg(run["pid"], signal.SIGKILL)
    wait_for(lambda: gone(run["pid"]) and gone(run["worker_pid"]), timeout=10, what="the run's processes to die")
    out = fmix("doctor")
    assert out.returncode == 1 and "1 run(s) marked running have no process left" in out.stdout, out.stdout
    fmix("doctor", "--fix", check=0)
    assert json.loads(fmix("workflow", "runs", "hello", "--json", check=0).stdout)[0]["status"] == "failed"
