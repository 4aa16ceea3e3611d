"""SQL over datasets: DuckDB over Arrow, fed by PyIceberg's scan planning.

DuckDB's Iceberg extension needs a download (refused here), so each dataset the query names is planned
by PyIceberg (the snapshot's data files, pruned by its manifests) and handed to DuckDB as a
``pyarrow.dataset`` — DuckDB then pushes the column projection and the WHERE filters into the Parquet
reads. A snapshot with delete files (or a table whose columns were renamed) takes PyIceberg's own full
scan instead, which applies them. Dataset names may contain ``-``: an unquoted name after FROM/JOIN
is quoted for DuckDB.
"""

from __future__ import annotations

import os
import re
from typing import Any

from mixtrain.errors import InvalidInput

QUERY_DESCRIPTION = "query of {name} at snapshot {snapshot}: {sql}"


def _mentions(sql: str, name: str) -> bool:
    return re.search(rf"(?<![\w\-.]){re.escape(name)}(?![\w\-])", sql) is not None


def _quote_names(sql: str, names: list[str]) -> str:
    for n in sorted(names, key=len, reverse=True):
        sql = re.sub(rf'(?i)(\b(?:from|join)\s+){re.escape(n)}(?![\w\-"])', rf'\1"{n}"', sql)
    return sql


def _arrow_source(table, snapshot_id: int | None, resolve=lambda loc: loc):
    """A pyarrow dataset of the snapshot's data files (pushdown-capable), or the scanned table."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    scan = table.scan(snapshot_id=snapshot_id)
    tasks = list(scan.plan_files())
    schema = table.schema().as_arrow()
    if not tasks:
        return schema.empty_table()
    if any(t.delete_files for t in tasks):
        return scan.to_arrow()
    files = [resolve(t.file.file_path) for t in tasks]  # stored relative to the warehouse: found in this home
    paths = [f[len("file://") :] if f.startswith("file://") else f for f in files]
    if any("://" in p for p in paths):
        return scan.to_arrow()  # object storage: PyIceberg's FileIO reads it
    missing = next((p for p in paths if not os.path.isfile(p)), None)
    if missing is not None:
        from mixtrain.datasets.fileio import damaged

        raise damaged(missing, "is missing")
    try:
        data = ds.dataset(paths, format="parquet")
    except pa.ArrowInvalid:  # a data file that is not Parquet (truncated, overwritten): PyIceberg says which
        return scan.to_arrow()
    if data.schema.names != schema.names:  # renamed/evolved columns: PyIceberg maps field ids
        return scan.to_arrow()
    return data


def run_query(datasets, sql: str, *, name: str | None = None, snapshot_id: int | None = None, limit: int | None = None):
    """Run ``sql`` over the datasets it names; a ``pyarrow.Table``. ``snapshot_id`` pins ``name``."""
    import duckdb

    sql = (sql or "").strip().rstrip(";")
    if not sql:
        raise InvalidInput("empty query", 'write a SELECT, e.g. "SELECT * FROM NAME LIMIT 5"')
    names = [n for n in datasets.names() if _mentions(sql, n)]
    if name is not None:
        datasets.require(name)
        if name not in names:
            raise InvalidInput(f"the query does not read dataset {name!r}", f"write FROM {name} in it")
    if not names:
        raise InvalidInput("the query names no dataset", "write FROM NAME with a name from `mixtrain dataset list`")
    con = duckdb.connect()
    sources: dict[str, Any] = {}
    for n in names:
        table = datasets.get(n)
        snap = snapshot_id if n == name else None
        if snap is not None and table.snapshot_by_id(snap) is None:
            from mixtrain.errors import NotFound

            raise NotFound(f"dataset {n!r} has no snapshot {snap}", f"see `mixtrain dataset versions {n}`")
        sources[n] = _arrow_source(table, snap, getattr(datasets, "resolve", lambda loc: loc))
        con.register(n, sources[n])
    query = _quote_names(sql, names)
    if limit is not None:
        query = f"SELECT * FROM ({query}) AS q LIMIT {int(limit)}"
    try:
        return con.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"bad SQL: {first}", "fix the query (DuckDB SQL; the dataset is its table)") from None
    finally:
        con.close()


def snapshot_of(datasets, name: str, snapshot_id: int | None) -> int | None:
    if snapshot_id is not None:
        return snapshot_id
    snap = datasets.get(name).current_snapshot()
    return snap.snapshot_id if snap else None
