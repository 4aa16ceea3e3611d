"""Who did what: runs, datasets, model versions and evals record the user who created them.

Revision ID: 0006
Follows 0005 (resumes and partial evals).

``created_by``: ``MIXTRAIN_USER`` (default the OS user) of the process that created the row — in a
team's shared PostgreSQL home, several people write to one database. The column is named
``created_by``, not ``user``, because ``user`` is a reserved word in PostgreSQL. Rows from before this
migration keep NULL: nobody knows who made them, and the faces show that as unknown rather than
guessing (e.g. stamping today's OS user on a colleague's old runs would be a lie).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("runs", "datasets", "model_versions", "evals")


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    for table in TABLES:
        # Idempotent, like 0005: a home whose revision stamp was set back may already have the column.
        if "created_by" not in {c["name"] for c in insp.get_columns(table)}:
            with op.batch_alter_table(table) as batch:
                batch.add_column(sa.Column("created_by", sa.String(64)))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("created_by")
