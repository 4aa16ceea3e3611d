"""Engine creation and automatic migration.

Migrations run on first use of a database; afterwards a single cheap query confirms the schema is at
head so that every CLI call does not pay for importing Alembic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text

from mixtrain import health
from mixtrain.errors import MixtrainError, StorageError
from mixtrain.faults import free_bytes, guard, human
from mixtrain.health import Finding

T = TypeVar("T")

HEAD = "0007"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def inserted_id(result) -> int:
    """The primary key an INSERT created (SQLAlchemy types it as optional; an INSERT always has one)."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for a server database or an in-memory one)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def open_store(url: str, what: str, setting: str, connect: Callable[[str], T]) -> T:
    """Open a SQL-backed store the one safe way; ``connect(url)`` makes the store object and touches the DB.

    For a SQLite file: refuse a lost/emptied file where state existed, create the folder, open read-only
    on a read-only home and, when the disk is completely full (SQLite cannot even create its WAL index
    to read), retry read-only so reads still work. Every fault becomes one ``MixtrainError`` line.
    """
    db_file = sqlite_file(url)
    try:
        if db_file is not None:
            check_not_lost(db_file, what)
            with guard(db_file.parent, "the mixtrain home"):
                db_file.parent.mkdir(parents=True, exist_ok=True)
            if read_only_dir(db_file):
                url = sqlite_read_only_url(db_file)  # reads work; writes say "read-only"
        try:
            store = connect(url)
        except Exception as exc:
            if db_file is None or not _disk_full_at(db_file, exc):
                raise
            store = connect(sqlite_read_only_url(db_file))
    except MixtrainError:
        raise
    except Exception as exc:  # connection refused, bad URL, permissions
        fault = sqlite_fault(exc, str(db_file)) if db_file is not None else None
        if fault is not None:
            raise fault from None
        if isinstance(exc, OSError):
            raise StorageError.from_os_error(exc, db_file or url, f"the {what}") from None
        raise MixtrainError(
            f"cannot open the {what} {_safe_url(url)}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            f"check {setting} (see `mixtrain config`)",
        ) from exc
    if db_file is not None:
        mark_in_use(db_file)
    return store


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def sqlite_engine(url: str, *, pragmas: bool = True) -> Engine:
    """An engine whose SQLite faults become one line; WAL + busy timeout unless opened read-only."""
    if url.startswith("sqlite") and "mode=ro" not in url:
        engine = create_engine(url, connect_args={"timeout": 30})
        if pragmas:
            event.listen(engine, "connect", _sqlite_pragmas)
    elif url.startswith("sqlite"):
        engine = create_engine(url)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    translate_faults(engine)
    return engine


def translate_faults(engine: Engine) -> None:
    """SQLite's storage faults on this engine become one line naming the file."""
    event.listen(engine, "handle_error", _translate_error)


def get_engine(url: str) -> Engine:
    """One migrated engine per URL per process."""
    with _lock:
        if url in _engines:
            return _engines[url]

        def connect(u: str) -> Engine:
            engine = sqlite_engine(u)
            try:
                _migrate_if_needed(engine)
            except BaseException:
                engine.dispose()
                raise
            return engine

        engine = open_store(url, "metadata database", "MIXTRAIN_DATABASE_URL", connect)
        _engines[url] = engine
        return engine


def check(url: str) -> list[Finding]:
    """The metadata database's health, for `mixtrain doctor`."""
    db = sqlite_file(url)
    if db is None:
        get_engine(url)
        return [health.ok("metadata database reachable")]
    return check_sqlite(db, "metadata database", "alembic_version")


def check_sqlite(db: Path, label: str, required_table: str) -> list[Finding]:
    """Integrity of a SQLite store file, read-only (the doctor must not change what it looks at)."""
    import sqlite3

    if not db.exists() or db.stat().st_size == 0:
        state = "missing" if not db.exists() else "empty (0 bytes)"
        if marker(db).exists():
            return [
                health.problem(
                    f"{label} {db} is {state} but this home was in use",
                    f"restore {db.name} from a backup; to start afresh, move the home away",
                )
            ]
        return [health.ok(f"{label} {db} not created yet")]
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [health.problem(f"{label} {db} is corrupt: {exc}", f"restore {db.name} from a backup")]
    if result != "ok":
        return [
            health.problem(f"{label} {db} fails SQLite's integrity check: {result}", f"restore {db.name} from a backup")
        ]
    if required_table not in tables:
        return [health.problem(f"{label} {db} has lost its tables", f"restore {db.name} from a backup")]
    return [health.ok(f"{label} {db} passes SQLite's integrity check")]


# -- faults: a full disk, a corrupt or lost SQLite file, a read-only home --------------------------------


def read_only_dir(db_file: Path) -> bool:
    """A home on a read-only mount (or without write permission) whose database already exists."""
    return db_file.exists() and not os.access(db_file.parent, os.W_OK)


def _disk_full_at(db_file: Path, exc: BaseException) -> bool:
    text = str(exc).lower()
    io_error = isinstance(exc, StorageError) or any(
        t in text for t in ("disk i/o error", "disk is full", "unable to open")
    )
    return io_error and db_file.exists() and (free_bytes(db_file.parent) or 0) < (1 << 20)


def sqlite_read_only_url(db_file: Path) -> str:
    """Open a WAL database where its -shm file cannot be created: read-only, and immutable when no
    WAL is pending (a clean shutdown checkpoints it away), since SQLite cannot coordinate locks there."""
    wal = db_file.with_name(db_file.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    return f"sqlite:///file:{db_file}?mode=ro&uri=true" + ("" if pending else "&immutable=1")


def marker(db_file: Path) -> Path:
    """Written beside a SQLite store once it holds its schema: proof that state existed here."""
    return db_file.with_name(db_file.name + ".initialized")


def mark_in_use(db_file: Path) -> None:
    m = marker(db_file)
    if not m.exists():
        try:
            m.write_text(
                "mixtrain state lives beside this file; if the database is lost, restore it rather than start afresh\n"
            )
        except OSError:  # a read-only home: reads still work
            pass


def check_not_lost(db_file: Path, what: str) -> None:
    """Refuse to silently start afresh where a store existed: a lost file must not look like a new install."""
    if not marker(db_file).exists():
        return
    try:
        size = db_file.stat().st_size
    except FileNotFoundError:
        state = "missing"
    else:
        if size > 0:
            return
        state = "empty (0 bytes)"
    raise MixtrainError(
        f"the {what} {db_file} is {state}, but this home was in use ({marker(db_file).name} exists): its records would be lost",
        f"restore {db_file.name} from a backup (`mixtrain doctor` checks the home); to really start afresh, move the home away",
    )


def _translate_error(ctx) -> None:
    """SQLite's storage faults become one line naming the file (SQLAlchemy raises what this raises)."""
    err = sqlite_fault(ctx.original_exception, ctx.engine.url.database if ctx.engine is not None else None)
    if err is not None:
        raise err from None


def sqlite_fault(exc: BaseException, db: str | None) -> MixtrainError | None:
    text = str(exc).lower()
    where = (db or "the database").removeprefix("file:")
    if "database or disk is full" in text or "no space left" in text:
        return StorageError(
            f"disk full writing the database {where} ({human(free_bytes(where))} free)",
            "free space on that disk and try again; nothing was changed",
        )
    if "file is not a database" in text or "malformed" in text:
        return MixtrainError(
            f"the database {where} is corrupt ({str(exc).splitlines()[0]})",
            "restore it from a backup; `mixtrain doctor` checks the whole home",
        )
    full = db is not None and (free_bytes(where) or 0) == 0
    if ("readonly database" in text or "attempt to write" in text or "disk i/o error" in text) and full:
        return StorageError(
            f"disk full writing the database {where} (0 bytes free)",
            "free space on that disk and try again; nothing was changed",
        )
    if "readonly database" in text or "read-only" in text or "attempt to write" in text:
        return StorageError(
            f"cannot write to {where}: it is read-only", "reads work; writes need a writable mixtrain home"
        )
    if "disk i/o error" in text:
        return StorageError(
            f"disk I/O error on the database {where}", "check the disk (full, removed or failing) and try again"
        )
    return None


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _migrate_if_needed(engine: Engine) -> None:
    if _current_revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with _migration_lock(engine):
        if _current_revision(engine) == HEAD:  # another process migrated while we waited
            return
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine):
    """Serialise first-use migrations of a SQLite file across processes (PostgreSQL uses an advisory lock)."""
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if not db or db == ":memory:":
        yield
        return
    with open(f"{db}.migrate.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
