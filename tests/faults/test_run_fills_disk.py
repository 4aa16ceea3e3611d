"""#20 §3: a run that fills the disk is recorded as "disk full" — where, and how much — not as a kill;
and `workflow runs` works while the disk is still full. Real tmpfs (root only), real CLI, real runs."""

from __future__ import annotations

import json

import pytest
from fault_helpers import fill

# Fills the disk from inside the run (the file stays: the disk is still full when the run ends).
FILLER = """
import os
from mixtrain import MixFlow

class Filler(MixFlow):
    def run(self, how: str = "write"):
        path = os.path.join(os.environ["MIXTRAIN_RUN_DIR"], "scratch.bin")
        if how == "sleep":
            import time
            time.sleep(60)
        if how == "write":  # the workflow's own write hits ENOSPC and is not caught
            with open(path, "wb") as fh:
                while True:
                    fh.write(b"x" * (1 << 20))
                    fh.flush()
        # "quiet": the workflow fills the disk, swallows the error and returns normally
        try:
            with open(path, "wb") as fh:
                while True:
                    fh.write(b"x" * (1 << 20))
                    fh.flush()
        except OSError:
            pass
        return "done"
"""


@pytest.fixture
def small(fmix, tmpfs):
    mnt = tmpfs("16m")
    fmix.env["MIXTRAIN_HOME"] = str(mnt / "home")
    fmix.home = mnt / "home"
    fmix.mnt = mnt
    (fmix.root / "filler.py").write_text(FILLER)
    fmix("workflow", "create", str(fmix.root / "filler.py"), "--name", "filler", check=0)
    return fmix


def _runs(cli) -> list[dict]:
    proc = cli("workflow", "runs", "filler", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("how", ["write", "quiet"])
def test_a_run_that_fills_the_disk_is_recorded_as_disk_full(small, how):
    proc = small("workflow", "run", "filler", "--how", how)
    assert "Traceback" not in proc.stderr, proc.stderr
    # the disk is still full: the read works and the stored record says why, where, how much
    run = _runs(small)[0]
    assert run["status"] == "failed", run
    error = run["error"]
    assert "disk full" in error and "killed" not in error, error
    assert str(small.home) in error, error  # where
    assert "needed" in error and "free" in error, error  # how much
    # once space is freed, the same record stays (nothing re-decides it as a kill)
    (small.home / "runs" / "filler" / "1" / "scratch.bin").unlink()
    assert _runs(small)[0]["error"] == error


def test_runs_list_works_on_a_full_disk_with_a_dead_run(small):
    """A run whose processes died while the disk is full: listing must not need to write."""
    small("workflow", "run", "filler", "--how", "quiet", check=None)
    fill(small.mnt)
    try:
        for args in (
            ("workflow", "runs", "filler"),
            ("workflow", "runs", "filler", "--json"),
            (
                "workflow",
                "list",
            ),
        ):
            proc = small(*args)
            assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    finally:
        (small.mnt / ".filler").unlink(missing_ok=True)


def test_the_space_reserve_never_outlives_its_run(small):
    """Each run's reserve is given back: after a normal end, and after its processes were SIGKILLed."""
    import os
    import signal
    import time

    folder = small.home / "runs" / "filler"
    small("workflow", "run", "filler", "--how", "quiet", check=None)
    assert not (folder / "1" / ".space-reserve").exists()
    (folder / "1" / "scratch.bin").unlink()
    small("workflow", "run", "filler", "--how", "sleep", "-d", check=0)
    end = time.monotonic() + 60
    while not ((folder / "2" / ".space-reserve").exists() and _runs(small)[0]["status"] == "running"):
        assert time.monotonic() < end, "the run never started"
        time.sleep(0.1)
    os.killpg(_runs(small)[0]["pid"], signal.SIGKILL)  # supervisor, relay and worker at once
    end = time.monotonic() + 60
    while _runs(small)[0]["status"] == "running":
        assert time.monotonic() < end, "the killed run was never reconciled"
        time.sleep(0.2)
    assert "killed" in _runs(small)[0]["error"] and not (folder / "2" / ".space-reserve").exists()
