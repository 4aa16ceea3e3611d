"""Process identity without psutil: a pid plus its start time (from /proc) names one process.

A pid alone is not enough — pids are reused — so a run records both and is only considered alive
while a process with that pid *and* that start time exists and is not a zombie.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: finished, just not reaped
        return None
    return fields[19]


# Which machine a recorded process lives on: with a shared PostgreSQL metadata DB, another machine
# cannot see this one's /proc, so it must not judge (and fail) a run that is alive here.
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def identity(pid: int) -> str | None:
    """``host:start-time`` of a live process (what a run records), None if it is gone."""
    start = start_time(pid)
    return f"{HOST}:{start}" if start else None


def alive(pid: int | None, ident: str | None) -> bool:
    if not pid or not ident:
        return False
    host, _, start = ident.rpartition(":")
    if host and host != HOST:
        return True  # another machine's process: only that machine can tell, and its run reports itself
    return start_time(pid) == start


def kill_group(pgid: int, sig: int = signal.SIGTERM) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def children(pid: int) -> set[int]:
    """The direct children of ``pid`` (Linux /proc; empty elsewhere)."""
    out: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out |= {int(x) for x in fh.read().split()}
    except OSError:
        pass
    return out


def set_subreaper(on: bool) -> bool:
    """Make this process adopt orphaned descendants (Linux prctl PR_SET_CHILD_SUBREAPER); False if unsupported."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def kill_adopted(known: set[int], passes: int = 5) -> None:
    """SIGKILL and reap children of ours that are not in ``known`` (orphans we adopted as subreaper)."""
    import time

    for _ in range(passes):
        strays = children(os.getpid()) - known
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        time.sleep(0.02)
