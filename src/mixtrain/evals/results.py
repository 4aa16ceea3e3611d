"""An eval's results rows and the one rule for when the models *disagree* on a row.

The results table has ``row_id, image, prompt, reference`` and, per model label, ``<label>__output``
and ``<label>__score``; column names are built from the labels, never parsed. The terminal
(`eval results --disagreements`) and the dashboard ("disagreements only") both filter with
``disagrees`` — before it lived in both faces with different meanings, and a ``--metric none`` eval
showed disagreements in the terminal but never in the dashboard.
"""

from __future__ import annotations

import math

from mixtrain.evals.metrics import normalize_answer


def score(value) -> float | None:
    """A stored score: None for a failed row (null, or NaN once it went through pandas)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def disagrees(row: dict, labels: list[str], metric: str) -> bool:
    """Whether the models differ on ``row``.

    With a metric, their scores differ (one right and one wrong, or different grades; a failed row
    counts as a score of its own). With ``--metric none`` there are no scores: their normalised
    outputs differ ("Red." and "red" agree).
    """
    if metric == "none":
        values = {normalize_answer(row.get(f"{lab}__output")) for lab in labels}
    else:
        values = {score(row.get(f"{lab}__score")) for lab in labels}  # type: ignore[misc]
    return len(values) > 1
