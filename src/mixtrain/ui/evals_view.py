"""Evaluations as the dashboard shows them: the side-by-side results grid.

Column names come from each model's ``label`` in the eval record (``<label>__output``,
``<label>__score``); they are built, never parsed. Whether a row is a *disagreement* is decided by
the SDK's one rule (``mixtrain.evals.results.disagrees``), the same the terminal's
`eval results --disagreements` uses.
"""

from __future__ import annotations

import threading

from mixtrain.evals.results import disagrees, score

_cache: dict = {}
_lock = threading.Lock()


def list_evals(c) -> list:
    return c.list_evals()


def results(c, info) -> list[dict]:
    """The results rows for the grid, cached per eval while its record is unchanged (finished evals never change)."""
    key = (str(c.settings.home), info.name, str(info.finished_at), info.status)
    with _lock:
        if key in _cache:
            return _cache[key]
    labels = info.labels
    rows = []
    for i, rec in enumerate(c.eval_results(info.name)):
        rows.append(
            {
                "index": i,
                "row_id": rec.get("row_id"),
                "image": rec.get("image"),
                # every image of a multi-image row (results keep them in `images`), else the one image
                "images": [str(x) for x in rec["images"]]
                if rec.get("images") is not None and len(rec["images"])
                else [rec.get("image")]
                if rec.get("image")
                else [],
                "prompt": rec.get("prompt"),
                "reference": rec.get("reference"),
                "answers": [
                    {"label": lb, "output": rec.get(f"{lb}__output"), "score": score(rec.get(f"{lb}__score"))}
                    for lb in labels
                ],
                "disagree": disagrees(rec, labels, info.metric),
            }
        )
    with _lock:
        _cache.clear() if len(_cache) > 32 else None
        _cache[key] = rows
    return rows
