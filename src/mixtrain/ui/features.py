"""Which optional SDK capabilities this build has — checked in this one place.

Run metrics and evaluations land from other work streams; until the SDK has them, the pages that
show them say "no metrics recorded" / "no evaluations" instead of failing.
"""

from __future__ import annotations

from mixtrain import client as _sdk

HAS_METRICS = hasattr(_sdk.MixClient, "get_run_metrics")
HAS_EVALS = all(hasattr(_sdk.MixClient, m) for m in ("list_evals", "get_eval_info")) and hasattr(_sdk, "get_eval")
