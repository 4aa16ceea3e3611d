"""Eval records in the metadata DB: what was evaluated (dataset snapshot, model versions, config)
and how each model scored, so an eval can be reproduced and compared later.

The eval's job runs as a run of the built-in eval workflow. Reads have no side effects; ``reconcile``
is the explicit step that gives a record still marked active whose run has ended (cancelled, killed,
timed out) the run's status, so no eval stays ``running`` after its process is gone — the same
guarantee runs give, by delegation. The faces call it (through ``MixClient``) before they show evals.
"""

from __future__ import annotations

import builtins

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mixtrain.errors import AlreadyExists, NotFound
from mixtrain.metadata.db import get_engine, inserted_id, now
from mixtrain.metadata.schema import eval_models, evals, runs, workflows
from mixtrain.records import ACTIVE, Eval, RunStatus
from mixtrain.settings import Settings

NEVER_STARTED_AFTER = 60  # seconds
SCORE_KEYS = ("mean", "ci_low", "ci_high", "n", "failed", "generation_s")

# What `eval resume` may reopen.
RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMEOUT)


def label(name: str, version: int) -> str:
    """A model's column prefix and key in ``scores``: unique per (model, version) within an eval."""
    return f"{name}_v{version}"


class EvalStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = get_engine(settings.database_url)

    def insert(
        self,
        *,
        name: str,
        dataset: str,
        snapshot_id: int | None,
        metric: str,
        config: dict,
        models: builtins.list[dict],
        results_dataset: str,
    ) -> Eval:
        """A pending eval and its model rows, in one transaction."""
        try:
            with self.engine.begin() as conn:
                eval_id = inserted_id(
                    conn.execute(
                        insert(evals).values(
                            name=name,
                            dataset=dataset,
                            snapshot_id=snapshot_id,
                            metric=metric,
                            status=RunStatus.PENDING,
                            config=config,
                            results_dataset=results_dataset,
                            created_at=now(),
                            created_by=self.settings.user,
                        )
                    )
                )
                for i, m in enumerate(models):
                    conn.execute(
                        insert(eval_models).values(
                            eval_id=eval_id,
                            position=i,
                            model_name=m["name"],
                            model_version=m["version"],
                            label=m["label"],
                        )
                    )
        except IntegrityError as exc:
            raise AlreadyExists(
                f"eval {name!r} already exists", f"pick another name, or `mixtrain eval delete {name}` first"
            ) from exc
        return self.get(name)

    def exists(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(evals.c.id).where(evals.c.name == name)).first() is not None

    def attach_run(self, name: str, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(evals).where(evals.c.name == name).values(run_id=run_id))

    def set_status(self, name: str, status: str, **values) -> bool:
        """Move an active eval to ``status``; a finished eval is never overwritten by a late writer."""
        values["status"] = RunStatus(status)
        if values["status"].is_terminal:
            values.setdefault("finished_at", now())
        with self.engine.begin() as conn:
            q = update(evals).where(evals.c.name == name).where(evals.c.status.in_(ACTIVE))
            return conn.execute(q.values(**values)).rowcount == 1

    def save_model(self, name: str, label: str, summary: dict, failures: builtins.list[dict], rows: dict) -> bool:
        """One model's results, stored the moment it finishes: a killed eval keeps them, `eval resume` reuses them.

        ``rows``: ``{"outputs": [...], "scores": [...]}``, one entry per eval row. Only while the eval is active.
        """
        active = select(evals.c.id).where(evals.c.name == name).where(evals.c.status.in_(ACTIVE))
        with self.engine.begin() as conn:
            q = update(eval_models).where(eval_models.c.eval_id.in_(active)).where(eval_models.c.label == label)
            values = {k: summary.get(k) for k in SCORE_KEYS}
            return conn.execute(q.values(**values, failures=failures, rows=rows)).rowcount == 1

    def finished_models(self, name: str) -> dict[str, dict]:
        """{label: {"summary": {...}, "rows": {"outputs", "scores"}}} of the models an earlier run finished."""
        return {
            m["label"]: {"summary": {k: m[k] for k in SCORE_KEYS}, "rows": m["rows"]}
            for m in self._row(name)["models"]
            if m["rows"] is not None
        }

    def reopen(self, name: str, run_id: int | None) -> bool:
        """A failed/cancelled/timed-out eval becomes pending again under a new run — one conditional update,
        so of two concurrent resumes only one gets it."""
        with self.engine.begin() as conn:
            q = update(evals).where(evals.c.name == name).where(evals.c.status.in_(RESUMABLE))
            values = {"status": RunStatus.PENDING, "run_id": run_id, "error": None, "finished_at": None}
            return conn.execute(q.values(**values)).rowcount == 1

    def run_id(self, name: str) -> int | None:
        return self._row(name)["run_id"]

    def results_name(self, name: str) -> str:
        """The results dataset's name, whether or not it exists yet."""
        return self._row(name)["results_dataset"]

    def complete(
        self, name: str, scores: dict[str, dict], failures: builtins.list[dict], comparison: dict | None
    ) -> bool:
        """Store every model's summary and mark the eval completed, atomically."""
        with self.engine.begin() as conn:
            row = conn.execute(select(evals.c.id, evals.c.status).where(evals.c.name == name)).first()
            if row is None or row.status not in ACTIVE:
                return False
            for lab, s in scores.items():
                conn.execute(
                    update(eval_models)
                    .where(eval_models.c.eval_id == row.id)
                    .where(eval_models.c.label == lab)
                    .values(**{k: s.get(k) for k in SCORE_KEYS}, failures=failures)
                )
            conn.execute(
                update(evals)
                .where(evals.c.id == row.id)
                .values(status=RunStatus.COMPLETED, comparison=comparison, finished_at=now())
            )
        return True

    def get(self, name: str) -> Eval:
        """The eval as stored (``reconcile`` first to settle one whose run has ended)."""
        return self._record(self._row(name))

    def names(self) -> builtins.list[str]:
        with self.engine.connect() as conn:
            return [r.name for r in conn.execute(select(evals.c.name).order_by(evals.c.created_at, evals.c.id))]

    def list(self) -> builtins.list[Eval]:
        return [self.get(n) for n in self.names()]

    def reconcile(self, name: str | None = None) -> None:
        """The explicit liveness step: an active eval (``name``, or every one) whose run ended takes its status."""
        with self.engine.connect() as conn:
            q = select(evals.c.name).where(evals.c.status.in_(ACTIVE))
            active = conn.execute(q if name is None else q.where(evals.c.name == name)).scalars().all()
        for n in active:
            self._reconcile(self._row(n))

    def for_model(self, model_name: str) -> builtins.list[Eval]:
        """Every eval a model appears in (any version), oldest first, with that model's scores."""
        with self.engine.connect() as conn:
            names = (
                conn.execute(
                    select(evals.c.name)
                    .join(eval_models, eval_models.c.eval_id == evals.c.id)
                    .where(eval_models.c.model_name == model_name)
                    .distinct()
                    .order_by(evals.c.name)
                )
                .scalars()
                .all()
            )
        return [self.get(n) for n in names]

    def delete(self, name: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(delete(evals).where(evals.c.name == name)).rowcount == 0:
                raise NotFound(f"eval {name!r} not found", "see `mixtrain eval list`")

    # -- internals -----------------------------------------------------------------------------------
    def _row(self, name: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(evals, runs.c.number.label("run_number"), workflows.c.name.label("run_workflow"))
                .select_from(
                    evals.outerjoin(runs, runs.c.id == evals.c.run_id).outerjoin(
                        workflows, workflows.c.id == runs.c.workflow_id
                    )
                )
                .where(evals.c.name == name)
            ).first()
            if row is None:
                raise NotFound(f"eval {name!r} not found", "see `mixtrain eval list`")
            d = dict(row._mapping)
            d["models"] = [
                dict(r._mapping)
                for r in conn.execute(
                    select(eval_models).where(eval_models.c.eval_id == d["id"]).order_by(eval_models.c.position)
                )
            ]
        return d

    def _reconcile(self, row: dict) -> None:
        """An active eval whose run has ended (cancel, SIGKILL, timeout) takes the run's status."""
        if row["run_workflow"] is None:
            age = (now() - row["created_at"]).total_seconds()
            if row["run_id"] is None and age > NEVER_STARTED_AFTER:  # the creating process died before starting the run
                self.set_status(
                    row["name"], RunStatus.FAILED, error="the eval's run was never started (its creator exited first)"
                )
            return
        from mixtrain.workflows.registry import WorkflowRegistry

        reg = WorkflowRegistry(self.settings)
        try:
            run = reg.run(row["run_workflow"], row["run_number"])
        except NotFound:
            self.set_status(row["name"], RunStatus.FAILED, error="its run record was deleted")
            return
        if run.status.is_active and reg.reconcile(run.id):  # the run itself first
            run = reg.run_by_id(run.id)
        if run.status.is_terminal:
            # a completed run whose eval is not: its job never reported
            status = RunStatus.FAILED if run.status == RunStatus.COMPLETED else run.status
            self.set_status(row["name"], status, error=run.error or "the eval's run ended without reporting scores")

    @staticmethod
    def _record(row: dict) -> Eval:
        models, scores = [], {}
        for m in row["models"]:
            models.append({"name": m["model_name"], "version": m["model_version"], "label": m["label"]})
            if m["n"] is not None:
                scores[m["label"]] = {k: m[k] for k in SCORE_KEYS}
                scores[m["label"]]["failures"] = m["failures"] or []
        return Eval(
            name=row["name"],
            dataset=row["dataset"],
            snapshot_id=row["snapshot_id"],
            metric=row["metric"],
            status=RunStatus(row["status"]),
            error=row["error"],
            config=row["config"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            run={"workflow": row["run_workflow"], "number": row["run_number"]} if row["run_workflow"] else None,
            # named only once it exists: a failed or cancelled eval never wrote it
            results_dataset=row["results_dataset"] if row["status"] == RunStatus.COMPLETED else None,
            models=models,
            scores=scores,
            comparison=row["comparison"],
            created_by=row.get("created_by"),
        )
