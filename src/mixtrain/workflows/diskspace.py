"""A run that fills the disk is recorded as "disk full" — where, and how much — not as a mystery kill.

Why: when a run fills the disk that also holds the metadata database, nothing can record why it
failed: the worker's "failed" write, the supervisor's, and its log line all hit ENOSPC, the processes
exit, and the next read decides "killed (SIGKILL/OOM) or the machine restarted". So each run keeps a
small reserve file in its folder, written before the workflow starts; when recording the run's end
hits a full disk, the reserve is released and the write retried — the few pages SQLite needs are
there. "How much was needed" is not knowable for an arbitrary write, so the record says what is: the
disk's free space when the run started (the run needed more than that) and now.

Tried: a pre-sized failure file in the run folder, overwritten in place — it works, but the reason
then lives outside the database and every reader must merge it; the reserve keeps one source of truth.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mixtrain.faults import StorageError, free_bytes, human, is_disk_full
from mixtrain.workflows.runfolder import RunFolder

RESERVE = ".space-reserve"
RESERVE_BYTES = 512 << 10  # a status update in SQLite's WAL: a few 4 KB pages, with a wide margin

T = TypeVar("T")

# Free bytes on the run folder's disk when the run started (set by the supervisor before it forks the
# worker, so both know it).
_free_at_start: int | None = None


def prepare(folder: RunFolder) -> None:
    """Note the free space and write the reserve (skipped on a disk already too full for it)."""
    global _free_at_start
    _free_at_start = free_bytes(folder.path)
    path = folder / RESERVE
    try:
        with open(path, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        path.unlink(missing_ok=True)


def release(folder: RunFolder) -> bool:
    try:
        (folder / RESERVE).unlink()
        return True
    except OSError:
        return False


def disk_full(exc: BaseException) -> bool:
    return is_disk_full(exc) or (isinstance(exc, StorageError) and "disk full" in str(exc))


def with_reserve(folder: RunFolder, write: Callable[[], T]) -> T:
    """Do ``write``; on a full disk, release the run's reserve and try once more."""
    try:
        return write()
    except Exception as exc:
        if not disk_full(exc) or not release(folder):
            raise
    return write()


def reason(exc: BaseException, folder: RunFolder) -> str:
    """The run's recorded error for a full disk: where, how much was free at the start and now."""
    import re

    filename = getattr(exc, "filename", None)
    text = str(exc)
    if "disk full" in text:  # already our one-line message (StorageError): keep its what and where
        head = re.sub(r", [\d.]+ [KMGT]?B free$", "", text.split(" — ")[0])
        where = Path(filename or folder.path)
    elif filename:
        head, where = f"disk full writing {filename}", Path(filename)
    else:  # a write that names no file (e.g. into an open file): say whose and under which folder
        head, where = f"disk full: a write of the workflow failed (run folder {folder.path})", folder.path
    return f"{head}; {space(where)}"


def space(path: Path) -> str:
    import shutil

    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        usage = shutil.disk_usage(p)
    except OSError:
        return "free space unknown"
    need = (
        f"the run needed more than the {human(_free_at_start)} free when it started"
        if _free_at_start is not None
        else "the run needed more than was free"
    )
    return f"{human(usage.free)} free of {human(usage.total)} on that disk now; {need} — free space there and resume or re-run"
