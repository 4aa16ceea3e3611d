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
