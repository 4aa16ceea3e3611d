"""Per-step metrics of a run in the metadata DB: written by the trainer as it logs, read by the CLI/SDK.

Rows are (run_id, step, name, value); a step's row set is what the trainer logged at that step.
Writes are idempotent per (run, step, name) — a resumed trainer that logs a step again replaces it —
so a stored curve never has duplicate steps.
"""

from __future__ import annotations

import math

from sqlalchemy import delete, insert, select

from mixtrain.metadata.db import get_engine
from mixtrain.metadata.schema import run_metrics

# Trainer log keys that are not per-step series (summary values at the end of training).
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")


class MetricsStore:
    def __init__(self, database_url: str):
        self.engine = get_engine(database_url)

    def record(self, run_id: int, step: int, values: dict) -> int:
        """Store one logged step; non-numeric and non-finite values are left out. Returns rows written."""
        rows = [
            {"run_id": run_id, "step": int(step), "name": str(k)[:64], "value": float(v)}
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        if not rows:
            return 0
        names = [r["name"] for r in rows]
        with self.engine.begin() as conn:
            conn.execute(
                delete(run_metrics).where(
                    run_metrics.c.run_id == run_id, run_metrics.c.step == int(step), run_metrics.c.name.in_(names)
                )
            )
            conn.execute(insert(run_metrics), rows)
        return len(rows)

    def series(self, run_id: int) -> list[dict]:
        """One dict per step, sorted by step: ``{"step", "epoch", <metric>: value, ...}``."""
        with self.engine.connect() as conn:
            result = conn.execute(
                select(run_metrics.c.step, run_metrics.c.name, run_metrics.c.value)
                .where(run_metrics.c.run_id == run_id)
                .order_by(run_metrics.c.step, run_metrics.c.id)
            )
            by_step: dict[int, dict] = {}
            for step, name, value in result:
                by_step.setdefault(step, {"step": step, "epoch": None})[name] = value
        return [by_step[s] for s in sorted(by_step)]

    def copy(self, src_run_id: int, dst_run_id: int, *, up_to_step: int) -> int:
        """Carry a resumed run's history up to its checkpoint, so its curve starts at step 1 without a gap."""
        with self.engine.begin() as conn:
            rows = [
                {"run_id": dst_run_id, "step": r.step, "name": r.name, "value": r.value}
                for r in conn.execute(
                    select(run_metrics).where(run_metrics.c.run_id == src_run_id, run_metrics.c.step <= up_to_step)
                )
            ]
            if rows:
                conn.execute(insert(run_metrics), rows)
        return len(rows)
