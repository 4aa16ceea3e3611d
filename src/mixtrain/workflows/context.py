"""The run a workflow executes in, handed to it explicitly.

Why: code inside a run (the fine-tune recipe, a user's workflow) needs its run folder, number and id
to name outputs and record lineage. Reading them from environment variables made that a hidden
contract; the platform now sets ``flow.run_context`` before ``setup()`` and ``mixtrain.current_run()``
returns the same object anywhere in the run's process.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunContext:
    workflow: str
    number: int
    id: int | None
    run_dir: Path

    @classmethod
    def local(cls) -> RunContext:
        """Outside any run (a direct Python call): a fresh scratch folder, no run record."""
        return cls(workflow="local", number=0, id=None, run_dir=Path(tempfile.mkdtemp(prefix="mixtrain-run-")))


_current: RunContext | None = None


def current_run() -> RunContext | None:
    """The run executing in this process, or None outside a run."""
    return _current


def enter(ctx: RunContext | None) -> None:
    """Called by the platform's worker once, before the workflow's ``setup()``."""
    global _current
    _current = ctx
