"""One exception tree for every user-facing failure.

The CLI maps any ``MixtrainError`` to ``Error: <what> — <fix>`` and exit 1, so a user mistake never
shows a traceback. Anything else escaping is a bug and may show one.
"""

from __future__ import annotations


class MixtrainError(Exception):
    """Root of all expected errors. ``fix`` tells the user what to do about it."""

    def __init__(self, what: str, fix: str | None = None):
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.what} — {self.fix}" if self.fix else self.what


class NotFound(MixtrainError):
    pass


class AlreadyExists(MixtrainError):
    pass


class InvalidInput(MixtrainError):
    pass


class WorkflowFailed(MixtrainError):
    pass


class TrainingFailed(WorkflowFailed):
    """The trainer process (Axolotl) exited with an error; the message carries its last lines."""


class TrainingOutOfMemory(TrainingFailed):
    """The trainer ran out of accelerator memory; ``fix`` lists what to change."""


class Conflict(MixtrainError):
    """The resource is in a state that forbids the operation (e.g. deleting a workflow mid-run)."""


class StorageError(MixtrainError):
    """The disk or file system refused a write or read (full, read-only, unreadable, corrupt)."""

    @classmethod
    def from_os_error(cls, exc: OSError, path, what: str, needed: int | None = None) -> StorageError:
        import os

        from mixtrain.faults import FULL, READ_ONLY, errno_in_text, free_bytes, human

        where = str(getattr(exc, "filename", None) or path)
        code = exc.errno if exc.errno is not None else errno_in_text(str(exc))
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


class Damaged(MixtrainError):
    """Stored state exists but cannot be read back (a file of it vanished or is corrupt)."""
