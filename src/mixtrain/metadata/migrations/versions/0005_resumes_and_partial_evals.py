"""One active resume per run, and an eval's per-model results kept as each model finishes.

Revision ID: 0005
Follows 0004 (relative paths).

``runs.resumes_run_id``: the run a `workflow resume` continues. A partial unique index allows one
*active* (pending/running) resume per run, so two concurrent resumes cannot both start — the database
decides, not a check-then-insert race. ``eval_models.rows``: a finished model's per-row outputs and
scores, stored when that model finishes, so a killed eval keeps its finished models and `eval resume`
continues with the rest.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('pending', 'running')")


def upgrade() -> None:
    # Idempotent: a database whose revision stamp was set back (a restored or hand-repaired home) may
    # already hold these.
    insp = sa.inspect(op.get_bind())
    if "resumes_run_id" not in {c["name"] for c in insp.get_columns("runs")}:
        with op.batch_alter_table("runs") as batch:
            batch.add_column(sa.Column("resumes_run_id", sa.Integer))
    if "ux_runs_one_active_resume" not in {i["name"] for i in insp.get_indexes("runs")}:
        op.create_index(
            "ux_runs_one_active_resume",
            "runs",
            ["resumes_run_id"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )
    if "rows" not in {c["name"] for c in insp.get_columns("eval_models")}:
        with op.batch_alter_table("eval_models") as batch:
            batch.add_column(sa.Column("rows", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("eval_models") as batch:
        batch.drop_column("rows")
    op.drop_index("ux_runs_one_active_resume", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("resumes_run_id")
