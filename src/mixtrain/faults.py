"""Faults of the machine, not of the user: full disks, read-only or corrupt state.

Why a module of its own: every store meets the same few OS/SQLite failures, and each must become one
line that names the path and what to do (`Error: ... — ...`), never an ``OSError`` traceback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from pathlib import Path

from mixtrain.errors import MixtrainError, StorageError

__all__ = [
    "FULL",
    "READ_ONLY",
    "StorageError",
    "errno_in_text",
    "folder_lock",
    "free_bytes",
    "guard",
    "human",
    "is_disk_full",
]

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def errno_in_text(text: str) -> int | None:
    """pyarrow raises OSError without errno; its message carries "[errno N]"."""
    import re

    m = re.search(r"errno[ :]*(\d+)", text, re.I)
    return int(m.group(1)) if m else None


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in FULL:
        return True
    text = str(exc).lower()
    return "database or disk is full" in text or "no space left" in text or "errno 28" in text


def free_bytes(path) -> int | None:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@contextlib.contextmanager
def guard(path, what: str, needed: int | None = None):
    """Turn OS write failures under ``path`` into one StorageError line."""
    try:
        yield
    except MixtrainError:
        raise
    except OSError as exc:
        raise StorageError.from_os_error(exc, path, what, needed) from None


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold an exclusive flock on ``folder`` itself for the block: no lock file to leave behind after a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
