"""Evaluations as the dashboard shows them: scores per model and the side-by-side results grid.

Column names come from each model's ``label`` in the eval record (``<label>__output``,
``<label>__score``); they are built, never parsed. A row is a *disagreement* when the models'
scores on it differ (one right, one wrong — or, for graded metrics, different grades).
"""

from __future__ import annotations

import math
import threading

from mixtrain.ui import features

_cache: dict = {}
_lock = threading.Lock()


def list_evals(c) -> list[dict]:
    return c.list_evals() if features.HAS_EVALS else []


def scores_for_model(c, model: str) -> list[dict]:
    """Every eval that scored some version of ``model``: [{eval, label, version, score...}]."""
    out = []
    for ev in list_evals(c):
        for m in ev.get("models") or []:
            if m.get("name") == model:
                out.append(
                    {
                        "eval": ev["name"],
                        "dataset": ev.get("dataset"),
                        "metric": ev.get("metric"),
                        "status": ev.get("status"),
                        "version": m.get("version"),
                        "label": m["label"],
                        "score": (ev.get("scores") or {}).get(m["label"]),
                    }
                )
    return out


def _score(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def results(c, info: dict) -> list[dict]:
    """The results rows as dicts, cached per eval while its record is unchanged (finished evals never change)."""
    key = (str(c.settings.home), info["name"], str(info.get("finished_at")), info.get("status"))
    with _lock:
        if key in _cache:
            return _cache[key]
    from mixtrain.client import get_eval

    frame = get_eval(info["name"]).results().to_pandas()
    labels = [m["label"] for m in info["models"]]
    rows = []
    for i, rec in enumerate(frame.to_dict("records")):
        scores = [_score(rec.get(f"{lb}__score")) for lb in labels]
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
                    {"label": lb, "output": rec.get(f"{lb}__output"), "score": s}
                    for lb, s in zip(labels, scores, strict=False)
                ],
                "disagree": len(set(scores)) > 1,
            }
        )
    with _lock:
        _cache.clear() if len(_cache) > 32 else None
        _cache[key] = rows
    return rows
