"""Per-step training metrics of a run, and where a resumed run continued from.

Revision ID: 0003
On this branch it follows 0001; the evals branch adds 0002, after which down_revision is "0002".
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.UniqueConstraint("run_id", "step", "name"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("resumed_from", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("resumed_from")
    op.drop_table("run_metrics")
