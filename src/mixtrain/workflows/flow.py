"""What a user's workflow file imports: ``MixFlow`` and ``mixparam``.

Inputs are declared either as parameters of ``run()`` (a missing default means required) or as
class attributes set to ``mixparam(...)``. Both end up in one input spec (see ``spec.py``).
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


class MixParam:
    """A declared input. The runner replaces it on the instance with the run's value."""

    def __init__(self, default: Any = _MISSING, description: str = "", choices: list | None = None):
        self.default = default
        self.description = description
        self.choices = list(choices) if choices is not None else None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def __repr__(self) -> str:
        return f"mixparam(default={'<required>' if self.required else repr(self.default)})"


def mixparam(default: Any = _MISSING, description: str = "", choices: list | None = None) -> Any:
    """Declare a workflow input as a class attribute: ``epochs: int = mixparam(default=3, description=...)``."""
    return MixParam(default, description, choices)


class MixFlow:
    """Base class of a workflow. Override ``run()``; ``setup()`` and ``cleanup()`` are optional.

    Resource hints (class attributes): ``_mixflow_gpu`` (e.g. "a100"), ``_mixflow_memory`` (MiB),
    ``_mixflow_timeout`` (seconds, enforced), ``_mixflow_cpu`` (cores).
    """

    _mixflow_gpu: str | None = None
    _mixflow_memory: int | None = None
    _mixflow_timeout: int | None = None
    _mixflow_cpu: int | None = None

    def setup(self, *args, **kwargs) -> None:  # noqa: D401 - optional hook
        """Prepare before ``run()``; may take the merged input dict as its one argument."""

    def run(self, *args, **kwargs) -> Any:
        raise NotImplementedError("a MixFlow must define run()")

    def cleanup(self) -> None:
        """Release resources after ``run()``, whether it succeeded or not."""
