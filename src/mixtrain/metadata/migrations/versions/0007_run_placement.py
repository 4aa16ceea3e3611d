"""Where a run runs: ``runs.placement``, set when `workflow run` sent it to a Ray cluster (team mode, #21 §2).

Revision ID: 0007
Follows 0006 (created_by).

``placement`` is NULL for a run on this machine (its processes are found by pid, as before) and
``{"backend": "ray", "address": "http://HEAD:8265", "job": SUBMISSION_ID, "num_nodes": N}`` for a Ray
job: every home that shares the database — not only the one that submitted it — then knows to ask
the cluster, not ``/proc``, whether the run is alive, where its log is and how to stop it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent: a database whose revision stamp was set back may already hold it.
    if "placement" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}:
        with op.batch_alter_table("runs") as batch:
            batch.add_column(sa.Column("placement", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("placement")
