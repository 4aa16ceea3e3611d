"""`make test`: the suite as two pytest sessions ("lanes") at once, one per core.

Why: the suite runs on 2 cores, and one pytest session runs one test at a time. Much of it waits — runs that
sleep, supervisors being killed, servers starting, polls — and the background trainings of tests/harness/
prefetch.py fill only part of the idle core. Two sessions side by side keep both cores busy. Each lane is an
ordinary pytest session (its own fixtures, PostgreSQL, S3 server, fork server, temp folder); they share only
the tiny models, built once under a lock (``MIXTRAIN_TEST_SHARED``, tests/conftest.py). A test sees no
difference: every test runs exactly once, in one of the two lanes.

Lane 1 takes the training-heavy folders (``LANE_1``); lane 2 takes everything else, so a new test folder
is never left out. Extra arguments go to both sessions (``make test ARGS="-x"``). ``MIXTRAIN_TEST_LANES=1``
runs the whole suite in one session, as before. Exit status: 0 when both lanes pass, else the first failure's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LANE_1 = ("tests/e2e", "tests/gpu")  # the shared trainings and the tests that use them
COMMON = ["-q", "-rs", "--durations=15", "-p", "no:cacheprovider"]


def lanes(extra: list[str]) -> list[list[str]]:
    """The pytest arguments of each lane: lane 1 its folders, lane 2 the rest of tests/. Arguments that name
    tests (a path, ``file::test``) make one session of just those (two lanes would run them twice)."""
    if _names_tests(extra):
        return [extra]
    if os.environ.get("MIXTRAIN_TEST_LANES", "2") == "1":
        return [["tests", *extra]]
    return [[*LANE_1, *extra], ["tests", *(f"--ignore={p}" for p in LANE_1), *extra]]


VALUED = {"-k", "-m", "-p", "-o", "-W", "-c", "--ignore", "--deselect", "--basetemp", "--rootdir", "--maxfail"}


def _names_tests(args: list[str]) -> bool:
    """Whether ``args`` hold a positional test path (the value of an option such as ``-k`` is none)."""
    positional = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in VALUED)]
    return any((REPO / a.split("::")[0]).exists() for a in positional)


def combined(codes: list[int]) -> int:
    """One exit status for the lanes: the first failure's; 5 ("no test selected") only if no lane ran a test
    (``ARGS="-k …"`` may select tests of one lane only)."""
    failed = [c for c in codes if c not in (0, 5)]
    if failed:
        return failed[0]
    return 0 if 0 in codes else 5


def main(argv: list[str]) -> int:
    shared = Path(tempfile.mkdtemp(prefix="mixtrain-tests-"))
    env = dict(os.environ, MIXTRAIN_TEST_SHARED=str(shared / "shared"))
    started = time.monotonic()
    procs: list[tuple[str, subprocess.Popen, Path]] = []

    def stop(signum, _frame) -> None:
        """Ctrl-C / CI cancel: each lane gets the Ctrl-C pytest handles (its fixtures' teardown stops the servers
        it started), then whatever of it is left is killed; no lane outlives the runner."""
        for _, p, _ in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        for _, p, _ in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for name, _, log in procs:  # where each lane stood
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
            print(f"\n===== {name} — interrupted =====", *tail, sep="\n", flush=True)
        shutil.rmtree(shared, ignore_errors=True)
        raise SystemExit(128 + signum)

    # Before the lanes start: a Ctrl-C handler (not "ignored", as a background job inherits it) makes each
    # lane's pytest start with the default one, so the SIGINT below reaches it.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    for i, args in enumerate(lanes(argv), start=1):
        log = shared / f"lane{i}.log"
        cmd = [sys.executable, "-m", "pytest", *args, *COMMON, f"--basetemp={shared / f'lane{i}'}"]
        with open(log, "w") as out:
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        procs.append((f"lane {i}: {' '.join(args)}", proc, log))
        print(f"started {procs[-1][0]}", flush=True)

    codes: list[int] = []
    pending = list(procs)
    while pending:  # each lane's whole output as soon as it ends (the first to finish first)
        for item in list(pending):
            name, proc, log = item
            if proc.poll() is None:
                continue
            pending.remove(item)
            codes.append(proc.returncode)
            print(f"\n===== {name} — exit {proc.returncode} after {time.monotonic() - started:.0f} s =====", flush=True)
            sys.stdout.write(log.read_text(errors="replace"))
            sys.stdout.flush()
        time.sleep(0.5)
    failed = combined(codes)
    print(
        f"\n===== all lanes done in {time.monotonic() - started:.0f} s: "
        + ("passed" if not failed else "FAILED")
        + " ====="
    )
    if failed:
        print(f"(temp folders kept for a look: {shared})")
    else:
        shutil.rmtree(shared, ignore_errors=True)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
