"""Dataset operations on a PyIceberg SQL catalog.

The Iceberg catalog is the source of truth for which datasets exist; a table is created and filled in
one catalog commit, so a failed or killed create leaves no visible dataset. The description travels
with the table as a property. The metadata DB keeps where each dataset came from.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from sqlalchemy import delete, insert, select, update

from mixtrain.errors import AlreadyExists, InvalidInput, MixtrainError, NotFound
from mixtrain.metadata.db import get_engine, now
from mixtrain.metadata.schema import datasets
from mixtrain.names import check_name
from mixtrain.settings import Settings

NAMESPACE = "mixtrain"
DESCRIPTION = "mixtrain.description"
COMMIT_RETRIES = 20


class DatasetStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = get_engine(settings.database_url)
        self._catalog = None

    @property
    def catalog(self):
        if self._catalog is None:
            from pyiceberg.catalog.sql import SqlCatalog

            if self.settings.catalog_url.startswith("sqlite"):
                Path(self.settings.catalog_url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
            if self.settings.warehouse.startswith("file://"):
                Path(self.settings.warehouse[len("file://"):]).mkdir(parents=True, exist_ok=True)
            self._catalog = SqlCatalog("mixtrain", uri=self.settings.catalog_url, warehouse=self.settings.warehouse)
            try:
                self._catalog.create_namespace_if_not_exists(NAMESPACE)
            except Exception:  # a concurrent creator won the race
                pass
        return self._catalog

    def _ident(self, name: str) -> tuple[str, str]:
        return (NAMESPACE, check_name(name, "dataset"))

    # -- create / append -------------------------------------------------------------------------
    def create(self, name: str, file: str | Path, description: str = "", progress: Callable[[int], None] | None = None):
        from pyiceberg.exceptions import TableAlreadyExistsError

        from mixtrain.datasets.files import read_table

        ident = self._ident(name)
        if self.catalog.table_exists(ident):
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name, or `mixtrain dataset append`")
        data = read_table(file, progress)
        try:
            txn = self.catalog.create_table_transaction(
                ident, schema=data.schema, properties={DESCRIPTION: description}
            )
            txn.append(data)
            txn.commit_transaction()
        except TableAlreadyExistsError as exc:
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name") from exc
        self._record(name, description, str(Path(file).resolve()))
        return self.get(name)

    def create_from_arrow(self, name: str, data, description: str = "", source: str = ""):
        """Create a dataset from an in-memory Arrow table (e.g. an eval's results), in one catalog commit."""
        from pyiceberg.exceptions import TableAlreadyExistsError

        ident = self._ident(name)
        try:
            txn = self.catalog.create_table_transaction(ident, schema=data.schema, properties={DESCRIPTION: description})
            txn.append(data)
            txn.commit_transaction()
        except TableAlreadyExistsError as exc:
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name") from exc
        self._record(name, description, source)
        return self.get(name)

    def register(self, name: str, metadata_location: str, description: str = ""):
        """Register an existing Iceberg table by its metadata file, without copying data."""
        from pyiceberg.exceptions import TableAlreadyExistsError

        ident = self._ident(name)
        if self.catalog.table_exists(ident):
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name")
        if "://" not in metadata_location and not Path(metadata_location).is_file():
            raise InvalidInput(f"Iceberg metadata file not found: {metadata_location}", "pass the table's metadata JSON path")
        try:
            table = self.catalog.register_table(ident, metadata_location)
        except TableAlreadyExistsError as exc:
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name") from exc
        except Exception as exc:
            raise InvalidInput(f"cannot register {metadata_location}: {str(exc).splitlines()[0]}", "pass a valid Iceberg metadata JSON file") from exc
        if description:
            with table.transaction() as txn:
                txn.set_properties({DESCRIPTION: description})
        self._record(name, description, metadata_location)
        return self.get(name)

    def append(self, name: str, file: str | Path, progress=None):
        from pyiceberg.exceptions import CommitFailedException

        from mixtrain.datasets.files import read_table

        table = self.get(name)
        data = read_table(file, progress)
        target = table.schema().as_arrow()
        _check_compatible(target, data.schema, name)
        try:  # same columns in any order; types must convert losslessly
            data = data.select(target.names).cast(target)
        except (ValueError, TypeError, ArithmeticError) as exc:  # pyarrow's errors derive from these
            raise InvalidInput(
                f"file column types do not match dataset {name!r}: {str(exc).splitlines()[0]}",
                "append a file whose columns hold the same kinds of values",
            ) from None
        for attempt in range(COMMIT_RETRIES):
            try:
                table.append(data)
                self._add_source(name, str(Path(file).resolve()))
                return table
            except CommitFailedException:
                time.sleep(0.05 * (attempt + 1))
                table = self.get(name)
        raise MixtrainError(f"could not append to {name!r}: too many concurrent writers", "try again")

    def _record(self, name: str, description: str, source: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(datasets).where(datasets.c.name == name))
            conn.execute(insert(datasets).values(name=name, description=description, source=source, created_at=now()))

    def _add_source(self, name: str, source: str) -> None:
        """Remember every file a dataset came from: relative image paths are relative to their file."""
        with self.engine.begin() as conn:
            current = conn.execute(select(datasets.c.source).where(datasets.c.name == name)).scalar()
            if current is not None and source not in current.splitlines():
                conn.execute(update(datasets).where(datasets.c.name == name).values(source=f"{current}\n{source}"))

    # -- read --------------------------------------------------------------------------------------
    def get(self, name: str):
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load_table(self._ident(name))
        except NoSuchTableError as exc:
            raise NotFound(f"dataset {name!r} not found", "see `mixtrain dataset list`") from exc

    def names(self) -> list[str]:
        return sorted(ident[-1] for ident in self.catalog.list_tables(NAMESPACE))

    def sources(self, name: str) -> list[str]:
        """The files a dataset was created and appended from (or the Iceberg metadata it was registered from)."""
        with self.engine.connect() as conn:
            return (conn.execute(select(datasets.c.source).where(datasets.c.name == name)).scalar() or "").splitlines()

    def summary(self, name: str) -> dict:
        table = self.get(name)
        snap = table.current_snapshot()
        return {
            "name": name,
            "description": table.properties.get(DESCRIPTION, ""),
            "rows": int(snap.summary.additional_properties.get("total-records", 0)) if snap and snap.summary else 0,
            "columns": [{"name": f.name, "type": str(f.field_type)} for f in table.schema().fields],
            "version": snap.snapshot_id if snap else None,
            "versions": len(table.snapshots()),
            "location": table.location(),
            "metadata_location": table.metadata_location,
            "source": ", ".join(self.sources(name)),
        }

    def versions(self, name: str) -> list[dict]:
        table = self.get(name)
        out = []
        for s in table.snapshots():
            props = s.summary.additional_properties if s.summary else {}
            out.append(
                {
                    "version": s.snapshot_id,
                    "timestamp_ms": s.timestamp_ms,
                    "operation": s.summary.operation.value if s.summary else "",
                    "added_rows": int(props.get("added-records", 0)),
                    "total_rows": int(props.get("total-records", 0)),
                }
            )
        return out

    def delete(self, name: str) -> None:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            self.catalog.purge_table(self._ident(name))
        except NoSuchTableError as exc:
            raise NotFound(f"dataset {name!r} not found", "see `mixtrain dataset list`") from exc
        with self.engine.begin() as conn:
            conn.execute(delete(datasets).where(datasets.c.name == name))


def _check_compatible(current, new, name: str) -> None:
    missing = [f.name for f in current if f.name not in new.names]
    extra = [f.name for f in new if f.name not in current.names]
    if missing or extra:
        detail = "; ".join(p for p in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "") if p)
        raise InvalidInput(f"file columns do not match dataset {name!r}: {detail}", "append a file with the same columns")
