"""mixtrain: self-hosted, local-first ML platform.

Heavy names are imported lazily so that ``import mixtrain`` (and the CLI) stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "EvalSpec",
    "MixClient",
    "MixFlow",
    "RunContext",
    "RunStatus",
    "__version__",
    "current_run",
    "get_eval",
    "get_model",
    "mixparam",
]


def __getattr__(name: str):
    if name == "MixClient":
        from mixtrain.client import MixClient

        return MixClient
    if name in ("MixFlow", "mixparam"):
        from mixtrain.workflows import flow

        return getattr(flow, name)
    if name in ("current_run", "RunContext"):
        from mixtrain.workflows import context

        return getattr(context, name)
    if name == "RunStatus":
        from mixtrain.records import RunStatus

        return RunStatus
    if name == "EvalSpec":
        from mixtrain.evals.spec import EvalSpec

        return EvalSpec
    if name in ("get_model", "get_eval"):
        from mixtrain import client

        return getattr(client, name)
    raise AttributeError(f"module 'mixtrain' has no attribute {name!r}")
