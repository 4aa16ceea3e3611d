"""Process identity without psutil: a pid plus its start time (from /proc) names one process.

A pid alone is not enough — pids are reused — so a run records both and is only considered alive
while a process with that pid *and* that start time exists and is not a zombie.
"""

from __future__ import annotations

import os
import signal


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


def alive(pid: int | None, started: str | None) -> bool:
    return bool(pid) and start_time(pid) == started


def kill_group(pgid: int, sig: int = signal.SIGTERM) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
