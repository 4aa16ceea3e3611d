"""`mixtrain doctor`: check a home for damage and say how to fix it; ``--fix`` repairs what is safe.

Why: faults (a killed write, a full disk, a truncated file) leave state that normal commands refuse
with one line each; the doctor looks at everything at once — both SQLite files, catalog ↔ warehouse,
the secret key, orphan files, runs stuck as running — and never repairs by forgetting data. Orphan
files are removed only when no table or snapshot references them and they are older than an age
guard (as Iceberg's own orphan-file removal does), so a write in flight is never touched.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from mixtrain.errors import MixtrainError
from mixtrain.settings import Settings

ORPHAN_AGE = 3600  # seconds: younger unreferenced files may belong to a write in flight


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""
    fixed: bool = False


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def ok(self, what: str) -> None:
        self.findings.append(Finding(True, what))

    def problem(self, what: str, fix: str = "", fixed: bool = False) -> None:
        if any(f.what == what for f in self.findings):
            return  # one broken store fails every later check that needs it: say it once
        self.findings.append(Finding(False, what, fix, fixed))

    @property
    def healthy(self) -> bool:
        return all(f.ok or f.fixed for f in self.findings)


def check(settings: Settings, fix: bool = False, older_than: float = ORPHAN_AGE) -> Report:
    report = Report()
    home = settings.home
    if not home.exists():
        report.ok(f"home {home} does not exist yet (a fresh install; created on first use)")
        return report
    for step in (_home, _metadata, _catalog, _tables, _secret_key, _leftovers, _runs):
        try:
            step(settings, report, fix)
        except MixtrainError as exc:
            report.problem(exc.what, exc.fix or "")
        except Exception as exc:  # the doctor reports; it must not crash on the damage it looks for
            report.problem(f"{step.__name__.strip('_')} check failed: {type(exc).__name__}: {exc}", "see the message")
    try:
        _orphans(settings, report, fix, older_than)
    except MixtrainError as exc:
        report.problem(exc.what, exc.fix or "")
    return report


def _home(settings: Settings, report: Report, fix: bool) -> None:
    import os

    if not os.access(settings.home, os.W_OK):
        report.problem(f"home {settings.home} is read-only", "reads work; writes need a writable home")
    else:
        report.ok(f"home {settings.home} is writable")


def _sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            return Path(path)
    return None


def _integrity(db: Path, label: str, required_table: str, report: Report) -> bool:
    from mixtrain.metadata.db import marker

    if not db.exists() or db.stat().st_size == 0:
        state = "missing" if not db.exists() else "empty (0 bytes)"
        if marker(db).exists():
            report.problem(
                f"{label} {db} is {state} but this home was in use",
                f"restore {db.name} from a backup; to start afresh, move the home away",
            )
        else:
            report.ok(f"{label} {db} not created yet")
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        report.problem(f"{label} {db} is corrupt: {exc}", f"restore {db.name} from a backup")
        return False
    if result != "ok":
        report.problem(f"{label} {db} fails SQLite's integrity check: {result}", f"restore {db.name} from a backup")
        return False
    if required_table not in tables:
        report.problem(f"{label} {db} has lost its tables", f"restore {db.name} from a backup")
        return False
    report.ok(f"{label} {db} passes SQLite's integrity check")
    return True


def _metadata(settings: Settings, report: Report, fix: bool) -> None:
    db = _sqlite_file(settings.database_url)
    if db is None:
        from mixtrain.metadata.db import get_engine

        get_engine(settings.database_url)
        report.ok("metadata database reachable")
        return
    _integrity(db, "metadata database", "alembic_version", report)


def _catalog(settings: Settings, report: Report, fix: bool) -> None:
    db = _sqlite_file(settings.catalog_url)
    if db is not None:
        from mixtrain.datasets.store import DatasetStore, committed_tables

        good = _integrity(db, "dataset catalog", "iceberg_tables", report)
        if not good and not (db.exists() and db.stat().st_size):
            stray = committed_tables(DatasetStore(settings).warehouse_dir())
            if stray:
                report.problem(
                    f"the warehouse holds {len(stray)} table(s) the catalog does not know: {', '.join(sorted(stray))}",
                    "restore the catalog from a backup, or register each with `mixtrain dataset create NAME --iceberg METADATA_JSON`",
                )


def _tables(settings: Settings, report: Report, fix: bool) -> None:
    """Every dataset's metadata loads and every file it references exists."""
    from mixtrain.datasets.store import NAMESPACE, DatasetStore, referenced_files

    store = DatasetStore(settings)
    names = sorted(ident[-1] for ident in store.catalog.list_tables(NAMESPACE))
    damaged = 0
    for name in names:
        try:
            table = store.get(name)
            missing = sorted(p for p in referenced_files(table) if p.startswith("/") and not Path(p).exists())
        except MixtrainError as exc:
            report.problem(exc.what, exc.fix or "")
            damaged += 1
            continue
        if missing:
            damaged += 1
            report.problem(
                f"dataset {name!r} references {len(missing)} missing file(s), e.g. {missing[0]}",
                f"restore the warehouse folder from a backup, or `mixtrain dataset delete {name} -y`",
            )
    if not damaged:
        report.ok(f"{len(names)} dataset(s): metadata and data files all present")


def _secret_key(settings: Settings, report: Report, fix: bool) -> None:
    from mixtrain.secrets.store import SecretStore, _read_key

    store = SecretStore(settings)
    stored = store._count()
    key = _read_key(settings.secret_key_file)  # raises a one-line error for a broken key
    if key is None:
        if stored:
            report.problem(
                f"the secret key file {settings.secret_key_file} is missing but {stored} secret(s) are stored",
                "restore the file from a backup; or delete the secrets (`mixtrain secret delete NAME -y`) and set them again",
            )
        else:
            report.ok("no secret key yet (created with the first secret)")
        return
    bad = []
    for row in store.list():
        try:
            store.get(row["name"])
        except MixtrainError:
            bad.append(row["name"])
    if bad:
        report.problem(
            f"{len(bad)} secret(s) cannot be decrypted with the key: {', '.join(bad)}",
            "set them again with `mixtrain secret set NAME --update`",
        )
    else:
        report.ok(f"secret key valid ({stored} secret(s) decrypt)")


def _leftovers(settings: Settings, report: Report, fix: bool) -> None:
    """Temp files of interrupted writes (workflow version copies, key files, output files)."""
    import shutil

    found = [p for p in settings.workflows_dir.glob("*/v*.tmp*")] if settings.workflows_dir.exists() else []
    found += list(settings.home.glob(".secret.key.*.tmp"))
    found += list(settings.runs_dir.glob("*/*/.output.json.*.tmp")) if settings.runs_dir.exists() else []
    found = [p for p in found if time.time() - p.stat().st_mtime > 60]
    if not found:
        report.ok("no temp files of interrupted writes")
        return
    if fix:
        for p in found:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    report.problem(
        f"{len(found)} temp file(s) of interrupted writes: {', '.join(str(p) for p in found[:3])}",
        "run `mixtrain doctor --fix`",
        fixed=fix,
    )


def _runs(settings: Settings, report: Report, fix: bool) -> None:
    from sqlalchemy import select

    from mixtrain.metadata.schema import runs
    from mixtrain.workflows import procs
    from mixtrain.workflows.registry import ACTIVE, WorkflowRegistry

    reg = WorkflowRegistry(settings)
    with reg.engine.connect() as conn:
        rows = conn.execute(
            select(runs.c.id, runs.c.pid, runs.c.pid_start, runs.c.worker_pid, runs.c.worker_start).where(
                runs.c.status.in_(ACTIVE)
            )
        ).all()
    stuck = [
        r.id
        for r in rows
        if r.pid and not procs.alive(r.pid, r.pid_start) and not procs.alive(r.worker_pid, r.worker_start)
    ]
    if not stuck:
        report.ok(f"{len(rows)} active run(s), none stuck")
        return
    if fix:
        for run_id in stuck:
            reg.reconcile(run_id)
    report.problem(
        f"{len(stuck)} run(s) marked running have no process left",
        "run `mixtrain doctor --fix` (or any `workflow runs`) to mark them failed",
        fixed=fix,
    )


def orphan_files(settings: Settings, older_than: float = ORPHAN_AGE) -> list[Path]:
    """Files in the local warehouse that no table or snapshot references, older than ``older_than`` s."""
    from mixtrain.datasets.store import NAMESPACE, DatasetStore, referenced_files

    store = DatasetStore(settings)
    wh = store.warehouse_dir()
    if wh is None or not (wh / NAMESPACE).is_dir():
        return []
    catalog = store.catalog  # refuses a lost catalog: then every file would look orphaned
    keep: set[str] = set()
    for ident in catalog.list_tables(NAMESPACE):
        try:
            keep |= referenced_files(catalog.load_table(ident))
        except Exception:  # a damaged table (reported by _tables): keep everything in its folder
            loc = store._location_from_catalog(ident[-1])
            if loc.startswith("file://"):
                keep |= {str(p) for p in Path(loc[len("file://") :]).rglob("*")}
    cutoff = time.time() - older_than
    out = []
    for p in (wh / NAMESPACE).rglob("*"):
        if p.is_file() and str(p) not in keep and p.stat().st_mtime <= cutoff:
            out.append(p)
    from mixtrain.images.store import orphan_images

    return sorted(out) + orphan_images(store, older_than)  # stored images no dataset references


def _orphans(settings: Settings, report: Report, fix: bool, older_than: float) -> None:
    from mixtrain.datasets.store import NAMESPACE, DatasetStore

    found = orphan_files(settings, older_than)
    if not found:
        report.ok("no orphan files in the warehouse")
        return
    size = sum(p.stat().st_size for p in found)
    if fix:
        for p in found:
            p.unlink(missing_ok=True)
        wh = DatasetStore(settings).warehouse_dir()
        assert wh is not None  # orphans are only looked for in a local warehouse
        top = wh / NAMESPACE
        for d in sorted(
            {a for p in found for a in p.parents if top in a.parents}, key=lambda d: len(d.parts), reverse=True
        ):
            try:
                d.rmdir()  # only succeeds when empty: a folder a new write is filling stays
            except OSError:
                pass
    from mixtrain.faults import human

    report.problem(
        f"{len(found)} orphan file(s) ({human(size)}) in the warehouse that no dataset references (interrupted or failed writes)",
        "run `mixtrain doctor --fix` to remove them",
        fixed=fix,
    )
