"""Faults of the machine, not of the user: full disks, read-only or corrupt state.

Why a module of its own: every store meets the same few OS/SQLite failures, and each must become one
line that names the path and what to do (`Error: ... — ...`), never an ``OSError`` traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from mixtrain.errors import MixtrainError

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class StorageError(MixtrainError):
    """The disk or file system refused a write or read (full, read-only, unreadable, corrupt)."""

    @classmethod
    def from_os_error(cls, exc: OSError, path, what: str, needed: int | None = None) -> StorageError:
        where = str(getattr(exc, "filename", None) or path)
        code = exc.errno if exc.errno is not None else _errno_in_text(str(exc))
        if code in FULL:
            free = free_bytes(path)
            need = f"; about {human(needed)} needed" if needed else ""
            have = f", {human(free)} free" if free is not None else ""
            return cls(
                f"disk full writing {what} to {where}{need}{have}",
                "free space on that disk (or point MIXTRAIN_HOME elsewhere) and try again",
            )
        if code in READ_ONLY:
            return cls(
                f"cannot write {what} to {where}: {os.strerror(code).lower()}",
                "the mixtrain home is read-only here: reads work, writes need a writable home",
            )
        return cls(
            f"cannot write {what} to {where}: {exc.strerror or exc}", "check the disk and the path's permissions"
        )


def _errno_in_text(text: str) -> int | None:
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
