"""Paths inside the home are stored relative to it, so a moved, copied or restored home just works.

Revision ID: 0004
Follows 0003 (run metrics). Rewrites what older versions stored as absolute paths: a run's folder
(``<home>/runs/<workflow>/<n>``), a workflow version's copy (``<home>/workflows/<name>/v<N>``) and a
model's adapter folder when it lies in a home those rows reveal, the folder holding this SQLite
file, or a home's ``axolotl_workspace`` (where fine-tunes write). The home is found from the rows themselves, so a home moved *before* upgrading migrates too.
A path outside every such home (a user's own adapter folder) stays absolute.
"""

from pathlib import PurePosixPath

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
WORKSPACE = "axolotl_workspace"


def _split(path: str, folder: str) -> tuple[str, str] | None:
    """(home, relative) for ``<home>/<folder>/<a>/<b>``; None for anything else."""
    p = PurePosixPath(path)
    if not p.is_absolute() or len(p.parts) < 4 or p.parts[-3] != folder:
        return None
    return str(PurePosixPath(*p.parts[:-3])), str(PurePosixPath(*p.parts[-3:]))


def upgrade() -> None:
    conn = op.get_bind()
    homes: set[str] = set()
    for table, key, column, folder in (
        ("runs", "id", "run_dir", "runs"),
        ("workflow_versions", "id", "source_dir", "workflows"),
    ):
        for row_id, value in conn.execute(sa.text(f"SELECT {key}, {column} FROM {table}")).all():
            split = _split(value or "", folder)
            if split is None:
                continue
            homes.add(split[0])
            conn.execute(sa.text(f"UPDATE {table} SET {column} = :v WHERE {key} = :id"), {"v": split[1], "id": row_id})
    db = conn.engine.url.database if conn.dialect.name == "sqlite" else None
    if db and not db.startswith("file:") and PurePosixPath(db).name == "mixtrain.db":
        homes.add(str(PurePosixPath(db).parent))
    for row_id, value in conn.execute(sa.text("SELECT id, adapter_path FROM model_versions")).all():
        p = PurePosixPath(value or "")
        if not p.is_absolute():
            continue
        rel = next((p.relative_to(h) for h in sorted(homes, key=len, reverse=True) if p.is_relative_to(h)), None)
        if rel is None and WORKSPACE in p.parts[1:-1]:  # fine-tunes write to <home>/axolotl_workspace/...
            rel = PurePosixPath(*p.parts[p.parts.index(WORKSPACE, 1) :])
        if rel is not None and str(rel) != ".":
            conn.execute(
                sa.text("UPDATE model_versions SET adapter_path = :v WHERE id = :id"), {"v": str(rel), "id": row_id}
            )


def downgrade() -> None:
    """Relative paths cannot be made absolute without knowing the home: nothing to undo safely."""
