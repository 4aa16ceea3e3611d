"""Engine creation and automatic migration.

Migrations run on first use of a database; afterwards a single cheap query confirms the schema is at
head so that every CLI call does not pay for importing Alembic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text

from mixtrain.errors import MixtrainError

HEAD = "0003"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(url: str) -> Engine:
    """One migrated engine per URL per process."""
    with _lock:
        if url in _engines:
            return _engines[url]
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        try:
            _migrate_if_needed(engine)
        except Exception as exc:  # connection refused, bad URL, permissions
            raise MixtrainError(
                f"cannot open the metadata database {engine.url.render_as_string(hide_password=True)}: "
                f"{str(exc).splitlines()[0]}",
                "check MIXTRAIN_DATABASE_URL (see `mixtrain config`)",
            ) from exc
        _engines[url] = engine
        return engine


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
