"""What a user's workflow file imports: ``MixFlow`` and ``mixparam``.

Inputs are declared as parameters of ``run()`` (a missing default means required), as class
attributes set to ``mixparam(...)``, or as one pydantic model: ``def run(self, params: MyParams)``.
All end up in one input spec (see ``spec.py``).
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


class MixParam:
    """A declared input. The runner replaces it on the instance with the run's value."""

    def __init__(
        self, default: Any = _MISSING, description: str = "", choices: list | None = None, **bounds: float | None
    ):
        unknown = set(bounds) - {"ge", "gt", "le", "lt"}
        if unknown:
            raise TypeError(f"mixparam() got unknown bound(s) {sorted(unknown)}; use ge, gt, le, lt")
        self.default = default
        self.description = description
        self.choices = list(choices) if choices is not None else None
        self.bounds = {k: v for k, v in bounds.items() if v is not None}

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def __repr__(self) -> str:
        return f"mixparam(default={'<required>' if self.required else repr(self.default)})"


def mixparam(
    default: Any = _MISSING,
    description: str = "",
    choices: list | None = None,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """Declare a workflow input: ``epochs: int = mixparam(default=3, description=..., ge=1)``.

    ``choices`` and the bounds (``ge``/``gt``/``le``/``lt``) are checked before a run is created and
    shown by ``workflow run NAME --help``.
    """
    return MixParam(default, description, choices, ge=ge, gt=gt, le=le, lt=lt)


class MixFlow:
    """Base class of a workflow. Override ``run()``; ``setup()`` and ``cleanup()`` are optional.

    Resource hints (class attributes): ``_mixflow_gpu`` (e.g. "a100"), ``_mixflow_memory`` (MiB),
    ``_mixflow_timeout`` (seconds, enforced), ``_mixflow_cpu`` (cores).
    """

    _mixflow_gpu: str | None = None
    _mixflow_memory: int | None = None
    _mixflow_timeout: int | None = None
    _mixflow_cpu: int | None = None
    #: The run this instance executes in (set by the platform before ``setup()``; see ``mixtrain.current_run``).
    run_context: Any = None

    def setup(self, *args, **kwargs) -> None:
        """Prepare before ``run()``; may take the merged input dict as its one argument."""

    def run(self, *args, **kwargs) -> Any:
        raise NotImplementedError("a MixFlow must define run()")

    def cleanup(self) -> None:
        """Release resources after ``run()``, whether it succeeded or not."""
