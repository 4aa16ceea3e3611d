"""Table definitions. Alembic migrations in ``migrations/versions`` create exactly these."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

metadata = MetaData()


class UTCDateTime(TypeDecorator):
    """A timestamp that is aware UTC on the way in and out: SQLite hands back naive datetimes and
    PostgreSQL the session's zone; converting here, once, spares every reader its own fix."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return _utc(value)

    def process_result_value(self, value, dialect):
        return _utc(value)


def _utc(value):
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(64)),  # MIXTRAIN_USER of its creator; NULL: made before migration 0006
)

workflows = Table(
    "workflows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("entrypoint", String(200), nullable=False),
    Column("main_file", Text, nullable=False),
    Column("source_dir", Text, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workflow_id", "version"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workflow_id", Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("output", JSON),
    Column("error", Text),
    Column("run_dir", Text, nullable=False),
    Column("pid", Integer),
    Column("pid_start", String(32)),
    Column("worker_pid", Integer),
    Column("worker_start", String(32)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("resumed_from", JSON),  # {"run": N, "step": S, "checkpoint": PATH} when `workflow resume` started it
    Column("resumes_run_id", Integer),  # the run a `workflow resume` continues (one active resume per run)
    Column("created_by", String(64)),  # MIXTRAIN_USER of who started it; NULL: made before migration 0006
    Column("placement", JSON),  # NULL: this machine; {"backend": "ray", "address", "job", "num_nodes"} (0007)
    UniqueConstraint("workflow_id", "number"),
)
# Two concurrent `workflow resume` of one run: the database lets one of them in (migration 0005).
_ACTIVE_RUN = text("status IN ('pending', 'running')")
Index(
    "ux_runs_one_active_resume",
    runs.c.resumes_run_id,
    unique=True,
    sqlite_where=_ACTIVE_RUN,
    postgresql_where=_ACTIVE_RUN,
)

# One row per (step, metric) the trainer logged: loss, learning_rate, grad_norm, epoch, eval_loss, ...
run_metrics = Table(
    "run_metrics",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", Float, nullable=False),
    UniqueConstraint("run_id", "step", "name"),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("base_model", Text, nullable=False),
    Column("model_type", String(32), nullable=False),
    Column("adapter_path", Text, nullable=False),
    Column("train_loss", Float),
    Column("lineage", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(64)),  # MIXTRAIN_USER of the run (or user) that registered it; NULL before 0006
    UniqueConstraint("model_id", "version"),
)

secrets = Table(
    "secrets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

evals = Table(
    "evals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("dataset", String(64), nullable=False),
    Column("snapshot_id", BigInteger),
    Column("metric", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("config", JSON, nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("results_dataset", String(64), nullable=False),
    Column("comparison", JSON),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("created_by", String(64)),  # MIXTRAIN_USER of its creator; NULL: made before migration 0006
)

eval_models = Table(
    "eval_models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("eval_id", Integer, ForeignKey("evals.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("model_name", String(64), nullable=False, index=True),
    Column("model_version", Integer, nullable=False),
    Column("label", String(160), nullable=False),
    Column("mean", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("n", Integer),
    Column("failed", Integer),
    Column("generation_s", Float),
    Column("failures", JSON),
    Column("rows", JSON),  # {"outputs": [...], "scores": [...]} per row, stored as the model finishes
    UniqueConstraint("eval_id", "label"),
)
