"""Evaluations: one row per eval, one per (eval, model version) with its summary scores.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("snapshot_id", sa.BigInteger),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("results_dataset", sa.String(64), nullable=False),
        sa.Column("comparison", sa.JSON),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "eval_models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("eval_id", sa.Integer, sa.ForeignKey("evals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("label", sa.String(160), nullable=False),
        sa.Column("mean", sa.Float),
        sa.Column("ci_low", sa.Float),
        sa.Column("ci_high", sa.Float),
        sa.Column("n", sa.Integer),
        sa.Column("failed", sa.Integer),
        sa.Column("generation_s", sa.Float),
        sa.Column("failures", sa.JSON),
        sa.UniqueConstraint("eval_id", "label"),
    )
    op.create_index("ix_eval_models_model_name", "eval_models", ["model_name"])


def downgrade() -> None:
    op.drop_index("ix_eval_models_model_name", table_name="eval_models")
    op.drop_table("eval_models")
    op.drop_table("evals")
