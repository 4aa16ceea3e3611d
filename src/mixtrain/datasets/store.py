"""Dataset operations on a PyIceberg SQL catalog.

The Iceberg catalog is the source of truth for which datasets exist; a table is created and filled in
one catalog commit, so a failed or killed create leaves no visible dataset. The description travels
with the table as a property. The metadata DB keeps where each dataset came from.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update

from mixtrain import health
from mixtrain.datasets import paths
from mixtrain.errors import AlreadyExists, InvalidInput, MixtrainError, NotFound, StorageError
from mixtrain.faults import folder_lock, guard, is_disk_full
from mixtrain.health import Finding
from mixtrain.metadata.db import (
    check_not_lost,
    check_sqlite,
    get_engine,
    now,
    open_store,
    sqlite_fault,
    sqlite_file,
    translate_faults,
)
from mixtrain.metadata.schema import datasets
from mixtrain.names import check_name
from mixtrain.settings import Settings

NAMESPACE = "mixtrain"
DESCRIPTION = "mixtrain.description"
COMMIT_RETRIES = 20
HOME_IO = "mixtrain.datasets.fileio.HomeFileIO"
ORPHAN_AGE = 3600  # seconds: younger unreferenced files may belong to a write in flight


class DatasetStore:
    last_report: Any = None  # the last create/append's IngestReport (images stored, bad images by row)

    def __init__(self, settings: Settings):
        self.settings = settings
        self._catalog = None
        self.moved_from: list[str] = []  # former warehouses of this home (set when the catalog opens)
        self.engine = get_engine(settings.database_url)

    @property
    def catalog(self):
        """The PyIceberg catalog, opened the one safe way (``metadata.db.open_store``) on first use."""
        if self._catalog is None:
            db_file = sqlite_file(self.settings.catalog_url)
            if db_file is not None:
                self._check_catalog_file(db_file)
            wh = self.warehouse_dir()
            if wh is not None and not wh.is_dir():
                with guard(wh, "the dataset warehouse"):
                    wh.mkdir(parents=True, exist_ok=True)
            self._catalog = open_store(
                self.settings.catalog_url, "dataset catalog", "MIXTRAIN_CATALOG_URL", self._open_catalog
            )
        return self._catalog

    def _open_catalog(self, uri: str):
        from pyiceberg.catalog.sql import SqlCatalog

        wh = self.settings.warehouse
        props = {"py-io-impl": HOME_IO, paths.WAREHOUSE: wh}
        if self.settings.remote_warehouse:  # endpoint, region and keys passed explicitly (see objectstore)
            from mixtrain import objectstore

            props.update(objectstore.iceberg_properties(self.settings))
        catalog = SqlCatalog("mixtrain", uri=uri, warehouse=wh, **props)
        translate_faults(catalog.engine)
        try:
            catalog.create_namespace_if_not_exists(NAMESPACE)
        except Exception as exc:  # a concurrent creator won the race (anything else shows on first use)
            db_file = sqlite_file(self.settings.catalog_url)
            if sqlite_fault(exc, str(db_file) if db_file else None) is not None or isinstance(exc, MixtrainError):
                raise
        self._find_former_warehouses(catalog)
        return catalog

    def _find_former_warehouses(self, catalog) -> None:
        """Tables written with absolute paths (before relative locations, or by an older mixtrain) whose
        files are in this warehouse under another prefix: the home was moved or copied. Record that
        prefix in the catalog (once) so the FileIO maps it here; never rewrite the table files."""
        from sqlalchemy import text

        props = catalog.load_namespace_properties(NAMESPACE)
        known = paths.former(props)
        with catalog.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT metadata_location FROM iceberg_tables WHERE table_namespace = :ns"), {"ns": NAMESPACE}
            ).all()
        wh = self.warehouse_dir()
        found = []
        for (loc,) in rows:
            if not loc or paths.is_relative(loc) or paths.under(loc, known):
                continue  # relative, or under a known former prefix already
            prefix, sep, rest = loc.rpartition(f"/{NAMESPACE}/")
            if not sep or wh is None or not (wh / NAMESPACE / rest).is_file():
                continue  # a registered table of the user's own (or a damaged one): leave it be
            prefix = prefix if "://" in prefix else f"file://{prefix}"
            if prefix not in known and prefix not in found:
                found.append(prefix)
        if found:
            known += found
            try:
                catalog.update_namespace_properties(NAMESPACE, updates={paths.FORMER: json.dumps(known)})
            except Exception:  # a read-only home: map in memory only
                pass
        catalog.properties[paths.FORMER] = json.dumps(known)
        here = paths.spellings(self.settings.warehouse)
        self.moved_from = [k for k in known if k.rstrip("/") not in here]

    def resolve(self, location: str) -> str:
        """A location as stored (relative, or under a former warehouse) as it is found in this home."""
        return paths.resolve(location, self.catalog.properties)

    def require(self, name: str) -> None:
        """NotFound unless the catalog lists the dataset (reads no table file: a damaged one can be deleted)."""
        if not self._exists(self._ident(name)[-1]):
            raise NotFound(f"dataset {name!r} not found", "see `mixtrain dataset list`")

    def _exists(self, name: str) -> bool:
        """Whether the catalog lists the table (without reading its files: a damaged table still exists)."""
        return bool(self._location_from_catalog(name))

    def _location_from_catalog(self, name: str) -> str:
        """The table folder from the catalog row's metadata location (``<table>/metadata/<file>.json``)."""
        from sqlalchemy import text

        with self.catalog.engine.connect() as conn:
            meta = conn.execute(
                text("SELECT metadata_location FROM iceberg_tables WHERE table_namespace = :ns AND table_name = :t"),
                {"ns": NAMESPACE, "t": name},
            ).scalar()
        return self.resolve(meta.rsplit("/metadata/", 1)[0]) if meta else ""

    def warehouse_dir(self) -> Path | None:
        """The local warehouse folder (None for object storage)."""
        wh = self.settings.warehouse
        return Path(wh[len("file://") :]) if wh.startswith("file://") else None

    def _where(self) -> Path | str:
        """The warehouse as named in messages: its folder, or its URI."""
        return self.warehouse_dir() or self.settings.warehouse

    def image_warehouse(self) -> Path | str | None:
        """Where stored images live: the local warehouse folder, or the ``s3://`` warehouse URI."""
        return self.settings.warehouse.rstrip("/") if self.settings.remote_warehouse else self.warehouse_dir()

    def _check_catalog_file(self, db_file: Path) -> None:
        """A lost, emptied or corrupt catalog must never look like a fresh install with no datasets."""
        check_not_lost(db_file, "dataset catalog")
        has_tables = None
        if db_file.exists() and db_file.stat().st_size > 0:
            has_tables = catalog_has_table_list(db_file)
        if not has_tables:  # no catalog yet: the warehouse must not hold tables (state from before)
            stray = committed_tables(self.warehouse_dir())
            if stray:
                raise MixtrainError(
                    f"the dataset catalog {db_file} is {'empty' if has_tables is False else 'missing'}, but the warehouse "
                    f"holds {len(stray)} table(s) ({', '.join(sorted(stray)[:3])}): their datasets would vanish",
                    f"restore {db_file.name} from a backup, or re-register each table with `mixtrain dataset create NAME "
                    "--iceberg METADATA_JSON`; `mixtrain doctor` lists them",
                )

    # -- health (asked by `mixtrain doctor`) -------------------------------------------------------
    def check(self, fix: bool = False, older_than: float = ORPHAN_AGE) -> list[Finding]:
        """The catalog file, every table's files, and orphan files in the warehouse (removed with ``fix``)."""
        out: list[Finding] = []
        db = sqlite_file(self.settings.catalog_url)
        if db is not None:
            integrity = check_sqlite(db, "dataset catalog", "iceberg_tables")
            out += integrity
            if not integrity[-1].ok and not (db.exists() and db.stat().st_size):
                stray = committed_tables(self.warehouse_dir())
                if stray:
                    out.append(
                        health.problem(
                            f"the warehouse holds {len(stray)} table(s) the catalog does not know: {', '.join(sorted(stray))}",
                            "restore the catalog from a backup, or register each with `mixtrain dataset create NAME --iceberg METADATA_JSON`",
                        )
                    )
        if self.catalog is not None and self.moved_from:
            out.append(
                health.ok(
                    f"the home was moved or copied: tables written under {', '.join(self.moved_from)} are read from "
                    f"{self.settings.warehouse} (references mapped in the catalog; no file moved or deleted)"
                )
            )
        for step in (self._check_tables, lambda: self._check_orphans(fix, older_than)):
            try:
                out += step()
            except MixtrainError as exc:
                out.append(health.problem(exc.what, exc.fix or ""))
        return out

    def _check_tables(self) -> list[Finding]:
        """Every dataset's metadata loads and every file it references exists."""
        out: list[Finding] = []
        names = self.names()
        for name in names:
            try:
                refs = referenced_files(self.get(name))
                local = [p for p in refs if p.startswith("/")]
                missing = sorted(p for p in local if not Path(p).exists()) + self._missing_remote(name, refs)
            except MixtrainError as exc:
                out.append(health.problem(exc.what, exc.fix or ""))
                continue
            corrupt = sorted(p for p in local if p.endswith(".parquet") and Path(p).exists() and not _parquet_ok(p))
            for files, state in ((missing, "missing"), (corrupt, "corrupt")):
                if files:
                    out.append(
                        health.problem(
                            f"dataset {name!r} references {len(files)} {state} file(s), e.g. {files[0]}",
                            f"restore the warehouse folder from a backup, or `mixtrain dataset delete {name} -y`",
                        )
                    )
        if not out:
            out.append(health.ok(f"{len(names)} dataset(s): metadata and data files all present"))
        return out

    def _missing_remote(self, name: str, refs: set[str]) -> list[str]:
        """The object-storage files a table references that its folder does not hold (one listing)."""
        remote = {r for r in refs if r.startswith("s3://")}
        if not remote:
            return []
        from mixtrain import objectstore

        held = {e.uri for e in objectstore.listing(self._location_from_catalog(name).rstrip("/") + "/")}
        return sorted(remote - held)

    def table_loaders(self) -> list[Callable[[], Any]]:
        """One loader per dataset table (what the image sweeps read their references from)."""
        catalog = self.catalog
        return [functools.partial(catalog.load_table, ident) for ident in catalog.list_tables(NAMESPACE)]

    def remote_orphans(self, older_than: float = ORPHAN_AGE) -> list:
        """Objects in an ``s3://`` warehouse that no table, snapshot or dataset references, older than
        ``older_than`` s — list and diff, as Iceberg's own orphan removal does: no lock spans machines, so
        the age guard is what keeps a write in flight elsewhere (its files not yet committed) safe."""
        from mixtrain import objectstore
        from mixtrain.images.refs import IMAGES_DIR
        from mixtrain.images.store import referenced_image_hashes

        wh = self.settings.warehouse.rstrip("/")
        catalog = self.catalog
        keep: set[str] = set()
        protected: list[str] = []  # folders of tables that cannot be read: kept whole
        for ident in catalog.list_tables(NAMESPACE):
            folder = self._location_from_catalog(ident[-1]).rstrip("/") + "/"
            try:
                keep |= referenced_files(catalog.load_table(ident))
            except Exception as exc:
                if objectstore.is_s3_error(exc):  # the store failed us: nothing can be called orphaned
                    raise objectstore.translate(exc, wh, "reading the tables of") from None
                protected.append(folder)
        cutoff = time.time() - older_than
        out = [
            e
            for e in objectstore.listing(f"{wh}/{NAMESPACE}/")
            if e.uri not in keep and e.mtime <= cutoff and not any(e.uri.startswith(p) for p in protected)
        ]
        hashes = referenced_image_hashes(self)
        if hashes is not None:
            out += [
                e
                for e in objectstore.listing(f"{wh}/{IMAGES_DIR}/")
                if e.uri.rsplit("/", 1)[-1].split(".", 1)[0] not in hashes and e.mtime <= cutoff
            ]
        return sorted(out, key=lambda e: e.uri)

    def orphan_files(self, older_than: float = ORPHAN_AGE) -> list[Path]:
        """Files in the local warehouse that no table or snapshot references, older than ``older_than`` s.

        Only what is provably garbage: a file is kept when any table references it by any spelling
        (resolved path, or its file name — Iceberg names files with UUIDs), and a table that cannot be
        read, or references a file that is not where it says, keeps its whole folder (found by name in
        this warehouse too: after a move its recorded path may point elsewhere).
        """
        wh = self.warehouse_dir()
        if wh is None or not (wh / NAMESPACE).is_dir():
            return []
        catalog = self.catalog  # refuses a lost catalog: then every file would look orphaned
        keep: set[str] = set()
        protected: set[Path] = set()  # table folders kept whole
        for ident in catalog.list_tables(NAMESPACE):
            folder = _local_path(self._location_from_catalog(ident[-1]))
            try:
                refs = referenced_files(catalog.load_table(ident))
            except Exception:  # a damaged table (reported by the table check): keep everything in its folder
                refs = None
            if refs is not None:
                keep |= refs | {Path(r).name for r in refs}
            if folder is not None and (refs is None or any(r.startswith("/") and not Path(r).exists() for r in refs)):
                protected |= {folder, wh / NAMESPACE / folder.name}
        cutoff = time.time() - older_than
        out = []
        for p in (wh / NAMESPACE).rglob("*"):
            if not p.is_file() or str(p) in keep or p.name in keep or p.stat().st_mtime > cutoff:
                continue
            if any(p.is_relative_to(d) for d in protected):
                continue
            out.append(p)
        from mixtrain.images.store import orphan_images

        return sorted(out) + orphan_images(self, older_than)  # stored images no dataset references

    def _check_orphans(self, fix: bool, older_than: float) -> list[Finding]:
        from mixtrain.faults import human

        if self.settings.remote_warehouse:
            return self._check_remote_orphans(fix, older_than)
        found = self.orphan_files(older_than)
        if not found:
            return [health.ok("no orphan files in the warehouse")]
        size = sum(p.stat().st_size for p in found)
        if fix:
            for p in found:
                p.unlink(missing_ok=True)
            wh = self.warehouse_dir()
            assert wh is not None  # orphans are only looked for in a local warehouse
            top = wh / NAMESPACE
            for d in sorted(
                {a for p in found for a in p.parents if top in a.parents}, key=lambda d: len(d.parts), reverse=True
            ):
                try:
                    d.rmdir()  # only succeeds when empty: a folder a new write is filling stays
                except OSError:
                    pass
        return [
            health.problem(
                f"{len(found)} orphan file(s) ({human(size)}) in the warehouse that no dataset references (interrupted or failed writes)",
                "run `mixtrain doctor --fix` to remove them",
                fixed=fix,
            )
        ]

    def _check_remote_orphans(self, fix: bool, older_than: float) -> list[Finding]:
        from mixtrain import objectstore
        from mixtrain.faults import human

        found = self.remote_orphans(older_than)
        if not found:
            return [health.ok("no orphan files in the warehouse")]
        if fix:
            objectstore.delete([e.uri for e in found])
        return [
            health.problem(
                f"{len(found)} orphan file(s) ({human(sum(e.size for e in found))}) in the warehouse "
                f"{self.settings.warehouse} that no dataset references (interrupted or failed writes)",
                "run `mixtrain doctor --fix` to remove them",
                fixed=fix,
            )
        ]

    def _ident(self, name: str) -> tuple[str, str]:
        return (NAMESPACE, check_name(name, "dataset"))

    # -- create / append -------------------------------------------------------------------------
    def create(
        self,
        name: str,
        file: str | Path,
        description: str = "",
        progress: Callable[[int], None] | None = None,
        **read: Any,
    ):
        """Create and fill a table in one catalog commit.

        ``read``: ``fmt``, ``image_root``, ``prompt``, ``keep_image_refs`` (see :meth:`ingest`). Images are
        stored content-addressed first; the images bad rows hold are in ``self.last_report``.
        The table's files go to a folder of this attempt's own (``<name>.<random>``): a failed, losing or
        interrupted create removes exactly its own files and can never touch a concurrent winner's.
        """
        ident = self._ident(name)
        if self._exists(name):
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name, or `mixtrain dataset append`")
        with self.ingest(file, progress, **read) as (data, source):
            self._create_table(name, ident, data, description, source)
        return self.get(name)

    @contextlib.contextmanager
    def ingest(
        self,
        file: str | Path,
        progress: Callable[[int], None] | None = None,
        *,
        fmt: str | None = None,
        image_root: str | Path | None = None,
        prompt: str | None = None,
        keep_image_refs: bool = False,
    ):
        """Read any accepted input, store its images, yield ``(arrow_table, source_label)``.

        Commit inside the ``with``: until then a shared lock keeps ``dataset delete`` from sweeping the
        images this ingest stored and no table references yet.
        """
        import pyarrow as pa

        from mixtrain.datasets.files import check_table, open_source
        from mixtrain.images.store import Ingest, ingest_batches

        src = open_source(file, fmt, image_root=image_root, prompt=prompt, progress=progress)
        with Ingest(self.image_warehouse(), self.settings.image_cache, src.base_dir, keep_refs=keep_image_refs) as ing:
            try:
                with _storage(self._where(), "images"):
                    data = ingest_batches(src.batches(), ing)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidInput(
                    f"cannot parse {src.label} as {src.fmt.upper()}: {_first_line(exc)}", "fix the file and try again"
                ) from None
            if data is None:
                raise InvalidInput(f"{src.label} has no data rows", "add at least one row")
            check_table(data, Path(src.label))
            self.last_report = ing.report
            yield data, src.label

    def _create_table(self, name: str, ident, data, description: str, source: str) -> None:
        from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError

        location = f"{NAMESPACE}/{name}.{uuid.uuid4().hex[:12]}"  # relative: the home can move (see fileio)
        committed = False
        try:
            with _storage(self._where(), f"dataset {name!r}", data.nbytes):
                try:
                    txn = self.catalog.create_table_transaction(
                        ident, schema=data.schema, location=location, properties={DESCRIPTION: description}
                    )
                    txn.append(data)
                    txn.commit_transaction()
                except (TableAlreadyExistsError, CommitFailedException) as exc:
                    if isinstance(exc, TableAlreadyExistsError) or self._exists(name):
                        raise AlreadyExists(f"dataset {name!r} already exists", "pick another name") from None
                    raise
                committed = True
                self._record(name, description, source)
        except BaseException:
            if committed:  # the catalog has it but the rest failed: undo, so a failed create leaves nothing
                try:
                    self.catalog.drop_table(ident)
                except Exception:
                    pass
            _remove_location(self.resolve(location))  # this attempt's own folder (object storage too)
            raise

    def create_from_arrow(self, name: str, data, description: str = "", source: str = ""):
        """Create a dataset from an in-memory Arrow table (e.g. an eval's results), in one catalog commit."""
        from pyiceberg.exceptions import TableAlreadyExistsError

        ident = self._ident(name)
        try:
            txn = self.catalog.create_table_transaction(
                ident,
                schema=data.schema,
                location=f"{NAMESPACE}/{name}.{uuid.uuid4().hex[:12]}",
                properties={DESCRIPTION: description},
            )
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
        if self._exists(name):
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name")
        if "://" not in metadata_location and not Path(metadata_location).is_file():
            metadata_location = self.resolve(metadata_location)  # a location as a table of this home spells it
        elif "://" not in metadata_location:
            metadata_location = str(Path(metadata_location).resolve())
        if "://" not in metadata_location and not Path(metadata_location).is_file():
            raise InvalidInput(
                f"Iceberg metadata file not found: {metadata_location}", "pass the table's metadata JSON path"
            )
        try:
            table = self.catalog.register_table(ident, metadata_location)
        except TableAlreadyExistsError as exc:
            raise AlreadyExists(f"dataset {name!r} already exists", "pick another name") from exc
        except Exception as exc:
            raise InvalidInput(
                f"cannot register {metadata_location}: {str(exc).splitlines()[0]}",
                "pass a valid Iceberg metadata JSON file",
            ) from exc
        if description:
            with table.transaction() as txn:
                txn.set_properties({DESCRIPTION: description})
        self._record(name, description, metadata_location)
        return self.get(name)

    def append(self, name: str, file: str | Path, progress=None, **read: Any):
        table = self.get(name)
        with self.ingest(file, progress, **read) as (data, source):
            table = self._append_arrow(name, table, data)
        self._add_source(name, source)
        return table

    def _append_arrow(self, name: str, table, data):
        from pyiceberg.exceptions import CommitFailedException

        target = table.schema().as_arrow()
        _check_compatible(target, data.schema, name)
        data = _align_image_columns(target, data)
        try:  # same columns in any order; types must convert losslessly
            data = data.select(target.names).cast(target)
        except (
            ValueError,
            TypeError,
            ArithmeticError,
            NotImplementedError,
        ) as exc:  # pyarrow's errors derive from these
            # (NotImplementedError: e.g. a nested struct/list value offered for a scalar column)
            raise InvalidInput(
                f"file column types do not match dataset {name!r}: {str(exc).splitlines()[0]}",
                "append a file whose columns hold the same kinds of values",
            ) from None
        location = self.resolve(table.location())
        with self._write_lock(location), _storage(self._where(), f"rows to dataset {name!r}", data.nbytes):
            before = _local_files(location)
            try:
                for attempt in range(COMMIT_RETRIES):
                    try:
                        table.append(data)
                        break
                    except CommitFailedException:
                        time.sleep(0.05 * (attempt + 1))
                        table = self.get(name)
                else:
                    raise MixtrainError(f"could not append to {name!r}: too many concurrent writers", "try again")
            except BaseException:
                # What this append wrote and no snapshot references (other mixtrain writers wait on the lock).
                # In object storage no lock spans machines: files of a failed append there are told apart
                # from a concurrent writer's only by age, so `mixtrain doctor` sweeps them (list + diff).
                if _local_path(location) is not None:
                    _remove_unreferenced(self.get(name), _local_files(location) - before)
                raise
        return table

    def _write_lock(self, location: str):
        """Serialise this machine's appends to one table, so a failed append can tell its own files apart.

        The lock is the table folder itself (flock on a directory): no lock file to leave behind.
        """
        root = _local_path(location)
        return folder_lock(root) if root is not None and root.is_dir() else contextlib.nullcontext()

    def _record(self, name: str, description: str, source: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(datasets).where(datasets.c.name == name))
            conn.execute(
                insert(datasets).values(
                    name=name, description=description, source=source, created_at=now(), created_by=self.settings.user
                )
            )

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
        except MixtrainError:
            raise
        except Exception as exc:  # the catalog knows it, but its metadata file is gone or unreadable
            from mixtrain import objectstore

            if objectstore.is_s3_error(exc):  # the store is unreachable or refuses us: not damage
                raise objectstore.translate(exc, self.settings.warehouse, f"reading dataset {name!r} from") from None
            raise MixtrainError(
                f"dataset {name!r} is damaged: its table metadata cannot be read ({_first_line(exc)})",
                f"restore the warehouse folder from a backup, or `mixtrain dataset delete {name} -y`",
            ) from None

    def names(self) -> list[str]:
        return sorted(ident[-1] for ident in self.catalog.list_tables(NAMESPACE))

    def sources(self, name: str) -> list[str]:
        """The files a dataset was created and appended from (or the Iceberg metadata it was registered from)."""
        with self.engine.connect() as conn:
            return (conn.execute(select(datasets.c.source).where(datasets.c.name == name)).scalar() or "").splitlines()

    def source_dirs(self, name: str) -> list[str]:
        """Folders of the files a dataset was loaded from: where its relative image paths are looked up."""
        return list(dict.fromkeys(str(Path(s).parent) for s in self.sources(name) if os.path.isfile(s)))

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
            "location": self.resolve(table.location()),
            "metadata_location": self.resolve(table.metadata_location),
            "source": ", ".join(self.sources(name)),
            "created_by": self.created_by(name),
        }

    def names_created_by(self, user: str) -> list[str]:
        """The datasets ``user`` created (as recorded in the metadata DB, and still in the catalog)."""
        with self.engine.connect() as conn:
            mine = set(conn.execute(select(datasets.c.name).where(datasets.c.created_by == user)).scalars())
        return [n for n in self.names() if n in mine]

    def created_by(self, name: str) -> str | None:
        """Who created the dataset (``MIXTRAIN_USER``); None when unknown (made before users were recorded)."""
        with self.engine.connect() as conn:
            return conn.execute(select(datasets.c.created_by).where(datasets.c.name == name)).scalar()

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
        import logging

        from pyiceberg.exceptions import NoSuchTableError, ValidationError

        inside = self.settings.warehouse.rstrip("/") + "/"
        mine: set[str] = set()
        try:
            loaded = self.catalog.load_table(self._ident(name))
            location = self.resolve(loaded.location())
            mine = _image_hashes(loaded)
            if not location.startswith(inside):
                # Registered with --iceberg (no copy): the files are the user's own; forget the table only.
                self.catalog.drop_table(self._ident(name))
                with self.engine.begin() as conn:
                    conn.execute(delete(datasets).where(datasets.c.name == name))
                return
            quiet = logging.getLogger("pyiceberg")
            level, quiet.level = quiet.level, logging.ERROR  # a file already gone is no news when deleting
            try:
                self.catalog.purge_table(self._ident(name))
            finally:
                quiet.setLevel(level)
        except NoSuchTableError as exc:
            raise NotFound(f"dataset {name!r} not found", "see `mixtrain dataset list`") from exc
        except (MixtrainError, OSError, ValueError, ValidationError):
            if not self._exists(name):
                raise
            # A damaged table (its metadata gone or garbled): forget it, and remove its folder, found from the catalog row.
            location = self._location_from_catalog(name)
            try:
                self.catalog.drop_table(self._ident(name))
            except NoSuchTableError as exc2:
                raise NotFound(f"dataset {name!r} not found", "see `mixtrain dataset list`") from exc2
        if location.startswith(self.settings.warehouse.rstrip("/") + "/"):
            _remove_location(location)  # purge deletes the files it knows; this also takes orphans and folders
        with self.engine.begin() as conn:
            conn.execute(delete(datasets).where(datasets.c.name == name))
        self._sweep_images(mine)

    def _sweep_images(self, candidates: set[str]) -> None:
        """Remove the stored images among ``candidates`` that no remaining table references."""
        from mixtrain.images.store import referenced_image_hashes, remove_images, stored_images, sweep_lock

        wh = self.warehouse_dir()
        if not candidates or wh is None:  # object storage: `mixtrain doctor` sweeps them, with an age guard
            return
        with sweep_lock(wh):
            keep = referenced_image_hashes(self)
            if keep is None:  # a table cannot be read: keep everything (doctor can sweep later)
                return
            files = stored_images(wh)
            remove_images(files[sha] for sha in candidates - keep if sha in files)


def _image_hashes(table) -> set[str]:
    from mixtrain.images.store import table_image_hashes

    try:
        return table_image_hashes(table)
    except Exception:  # a damaged table: its images stay until doctor proves them unreferenced
        return set()


def _align_image_columns(target, data):
    """An image column the dataset holds as text (none of its first images could be read) takes new
    images as their source text; one holding references takes unreadable text paths as references
    without a hash — so an append never fails on how the first file's images happened to turn out."""
    import pyarrow as pa

    from mixtrain.images.store import _is_ref_type

    for f in target:
        if f.name not in data.column_names:
            continue
        have = data.schema.field(f.name).type
        if pa.types.is_string(f.type) and _is_ref_type(have):
            col = data.column(f.name)
            texts = pa.chunked_array([c.field("source") for c in col.chunks], pa.string())
            data = data.set_column(data.schema.get_field_index(f.name), f.name, texts)
        elif _is_ref_type(f.type) and pa.types.is_string(have):
            refs = [
                None if v is None else {"sha256": None, "format": None, "width": None, "height": None, "source": v}
                for v in data.column(f.name).to_pylist()
            ]
            data = data.set_column(data.schema.get_field_index(f.name), f.name, pa.array(refs, f.type))
    return data


def _parquet_ok(path: str) -> bool:
    """Parquet's magic bytes at both ends (a truncated or overwritten file fails)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4, os.SEEK_END)
            return head == b"PAR1" and fh.read(4) == b"PAR1"
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_compatible(current, new, name: str) -> None:
    missing = [f.name for f in current if f.name not in new.names]
    extra = [f.name for f in new if f.name not in current.names]
    if missing or extra:
        detail = "; ".join(
            p for p in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "") if p
        )
        raise InvalidInput(
            f"file columns do not match dataset {name!r}: {detail}", "append a file with the same columns"
        )


# -- faults: staged writes, orphans, a lost catalog ---------------------------------------------------


class _storage:
    """Full disk / I/O failures while writing to the warehouse or catalog → one StorageError line."""

    def __init__(self, where: Path | str | None, what: str, needed: int | None = None):
        self.where, self.what, self.needed = where, what, needed

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None or isinstance(exc, MixtrainError) or not isinstance(exc, Exception):
            return False
        from mixtrain import objectstore

        if objectstore.is_s3_error(exc):
            raise objectstore.translate(exc, str(self.where or "the warehouse"), f"writing {self.what} to") from None
        if isinstance(exc, OSError):
            raise StorageError.from_os_error(exc, self.where or "the warehouse", self.what, self.needed) from None
        if is_disk_full(exc):
            raise StorageError.from_os_error(
                OSError(28, "No space left on device"), self.where or "the warehouse", self.what, self.needed
            ) from None
        fault = sqlite_fault(exc, None)
        if fault is not None:
            raise fault from None
        return False


def _local_path(location: str) -> Path | None:
    return (
        Path(location[len("file://") :])
        if location.startswith("file://")
        else (Path(location) if location.startswith("/") else None)
    )


def _local_files(location: str) -> set[str]:
    root = _local_path(location)
    if root is None or not root.exists():
        return set()
    return {str(p) for p in root.rglob("*") if p.is_file()}


def _remove_location(location: str) -> None:
    root = _local_path(location)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
    elif location.startswith("s3://"):
        from mixtrain import objectstore

        with contextlib.suppress(MixtrainError, OSError):  # best effort: doctor sweeps what stays
            objectstore.delete_prefix(location.rstrip("/") + "/")


def referenced_files(table) -> set[str]:
    """Every file the table's metadata reaches: metadata files, manifest lists, manifests, data files."""
    io = table.io
    meta = table.metadata
    props = io.properties
    out = {table.metadata_location, *(log.metadata_file for log in meta.metadata_log)}
    for snap in meta.snapshots:
        out.add(snap.manifest_list)
        for manifest in snap.manifests(io):
            out.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):
                out.add(entry.data_file.file_path)
    for stats in meta.statistics or []:
        out.add(stats.statistics_path)
    out = {paths.resolve(p, props) for p in out}
    return {str(_local_path(p) or p) for p in out}


def _remove_unreferenced(table, candidates: set[str]) -> None:
    keep = referenced_files(table)
    for path in candidates - keep:
        try:
            Path(path).unlink()
        except OSError:
            pass


def catalog_has_table_list(db_file: Path) -> bool:
    """Whether the SQLite file holds the Iceberg catalog's tables; a one-line error if it is not a database."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise MixtrainError(
            f"the dataset catalog {db_file} is corrupt ({exc})",
            "restore it from a backup; `mixtrain doctor` checks the whole home",
        ) from None
    return "iceberg_tables" in names


def committed_tables(warehouse: Path | None) -> list[str]:
    """Table folders in the local warehouse that hold table metadata (a committed table's mark)."""
    ns = warehouse / NAMESPACE if warehouse is not None else None
    if ns is None or not ns.is_dir():
        return []
    return [d.name for d in ns.iterdir() if d.is_dir() and any((d / "metadata").glob("*.metadata.json"))]
