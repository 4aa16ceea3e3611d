"""Workflows, their versions and their runs in the metadata DB.

Every read of runs first reconciles: a run marked active whose processes are gone (SIGKILL, OOM
killer, reboot) becomes ``failed`` with the reason, so no run stays ``running`` forever.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from mixtrain.errors import AlreadyExists, Conflict, InvalidInput, MixtrainError, NotFound
from mixtrain.faults import guard
from mixtrain.metadata.db import get_engine, inserted_id, now
from mixtrain.metadata.schema import runs, workflow_versions, workflows
from mixtrain.names import check_name
from mixtrain.settings import Settings
from mixtrain.workflows import procs
from mixtrain.workflows.runfolder import RunFolder

ACTIVE = ("pending", "running")
TERMINAL = ("completed", "failed", "cancelled", "timeout")
INSPECT_TIMEOUT = 60
NEVER_STARTED_AFTER = 60  # seconds a pending run without a process may wait before it is failed


class WorkflowRegistry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = get_engine(settings.database_url)

    # -- workflows ---------------------------------------------------------------------------------
    def create(
        self, name: str, files: builtins.list[Path], description: str = "", entrypoint: str | None = None
    ) -> dict:
        check_name(name, "workflow")
        with self.engine.connect() as conn:
            if conn.execute(select(workflows.c.id).where(workflows.c.name == name)).first():
                raise AlreadyExists(
                    f"workflow {name!r} already exists", f"use `mixtrain workflow update {name} FILE` for a new version"
                )
        files = _check_files(files)
        spec = inspect_files(files, entrypoint)
        try:
            with self.engine.begin() as conn:
                wf_id = inserted_id(
                    conn.execute(insert(workflows).values(name=name, description=description, created_at=now()))
                )
                self._add_version(conn, wf_id, name, 1, files, spec)
        except IntegrityError as exc:
            raise AlreadyExists(f"workflow {name!r} already exists", "pick another name") from exc
        return self.describe(name)

    def update(
        self, name: str, files: builtins.list[Path], description: str | None = None, entrypoint: str | None = None
    ) -> dict:
        wf = self._workflow(name)
        files = _check_files(files)
        spec = inspect_files(files, entrypoint or self.latest_version(name)["entrypoint"])
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    latest = (
                        conn.execute(
                            select(func.max(workflow_versions.c.version)).where(
                                workflow_versions.c.workflow_id == wf["id"]
                            )
                        ).scalar()
                        or 0
                    )
                    self._add_version(conn, wf["id"], name, latest + 1, files, spec)
                    if description is not None:
                        conn.execute(
                            update(workflows).where(workflows.c.id == wf["id"]).values(description=description)
                        )
                break
            except IntegrityError:
                if attempt == 4:
                    raise
        return self.describe(name)

    def _add_version(self, conn, wf_id: int, name: str, version: int, files: builtins.list[Path], spec: dict) -> None:
        dest = self.settings.workflows_dir / name / f"v{version}"
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with guard(dest.parent, f"workflow {name!r}", sum(f.stat().st_size for f in files)):
                tmp.mkdir(parents=True)
                for f in files:
                    shutil.copy2(f, tmp / f.name)
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # the DB transaction rolls back; leave no copy either
            if not any(dest.parent.iterdir()):
                dest.parent.rmdir()
            raise
        conn.execute(
            insert(workflow_versions).values(
                workflow_id=wf_id,
                version=version,
                entrypoint=spec["entrypoint"],
                main_file=files[0].name,
                source_dir=str(dest),
                spec=spec,
                created_at=now(),
            )
        )

    def _workflow(self, name: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(workflows).where(workflows.c.name == name)).first()
        if row is None:
            raise NotFound(f"workflow {name!r} not found", "see `mixtrain workflow list`")
        return dict(row._mapping)

    def latest_version(self, name: str) -> dict:
        wf = self._workflow(name)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(workflow_versions)
                .where(workflow_versions.c.workflow_id == wf["id"])
                .order_by(workflow_versions.c.version.desc())
                .limit(1)
            ).first()
        if row is None:
            raise NotFound(
                f"workflow {name!r} has no version", f"register one with `mixtrain workflow update {name} FILE`"
            )
        return dict(row._mapping)

    def versions(self, name: str) -> builtins.list[dict]:
        wf = self._workflow(name)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(workflow_versions)
                .where(workflow_versions.c.workflow_id == wf["id"])
                .order_by(workflow_versions.c.version)
            )
            return [dict(r._mapping) for r in rows]

    def describe(self, name: str) -> dict:
        wf = self._workflow(name)
        latest = self.latest_version(name)
        return {
            "name": wf["name"],
            "description": wf["description"],
            "created_at": wf["created_at"],
            "entrypoint": latest["entrypoint"],
            "version": latest["version"],
            "versions": [
                {"version": v["version"], "created_at": v["created_at"], "source": v["source_dir"]}
                for v in self.versions(name)
            ],
            "inputs": latest["spec"]["inputs"],
            "resources": latest["spec"]["resources"],
            "doc": latest["spec"].get("doc", ""),
            "runs": self.runs(name, limit=5),
        }

    def list(self) -> builtins.list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    workflows.c.name,
                    workflows.c.description,
                    workflows.c.created_at,
                    func.max(workflow_versions.c.version).label("version"),
                )
                .join(workflow_versions, workflow_versions.c.workflow_id == workflows.c.id)
                .group_by(workflows.c.id)
                .order_by(workflows.c.name)
            )
            out = [dict(r._mapping) for r in rows]
            counts: dict[str, int] = dict(
                conn.execute(
                    select(workflows.c.name, func.count(runs.c.id))
                    .join(runs, runs.c.workflow_id == workflows.c.id)
                    .group_by(workflows.c.name)
                ).all()
            )
        for r in out:
            r["runs"] = counts.get(r["name"], 0)
        return out

    def delete(self, name: str) -> None:
        wf = self._workflow(name)
        active = [r for r in self.runs(name) if r["status"] in ACTIVE]
        if active:
            raise Conflict(
                f"workflow {name!r} has an active run (#{active[0]['number']})",
                f"wait for it or `mixtrain workflow cancel {name} {active[0]['number']}`",
            )
        with self.engine.begin() as conn:
            conn.execute(delete(runs).where(runs.c.workflow_id == wf["id"]))
            conn.execute(delete(workflow_versions).where(workflow_versions.c.workflow_id == wf["id"]))
            conn.execute(delete(workflows).where(workflows.c.id == wf["id"]))
        shutil.rmtree(self.settings.workflows_dir / name, ignore_errors=True)

    # -- runs --------------------------------------------------------------------------------------
    def new_run(self, name: str, version: int, inputs: dict, resumed_from: dict | None = None) -> dict:
        """Insert a pending run with the next number; concurrent callers get distinct numbers."""
        wf = self._workflow(name)
        for _ in range(50):
            try:
                with self.engine.begin() as conn:
                    number = (
                        conn.execute(select(func.max(runs.c.number)).where(runs.c.workflow_id == wf["id"])).scalar()
                        or 0
                    ) + 1
                    run_dir = self.settings.runs_dir / name / str(number)
                    run_id = inserted_id(
                        conn.execute(
                            insert(runs).values(
                                workflow_id=wf["id"],
                                number=number,
                                version=version,
                                status="pending",
                                inputs=inputs,
                                run_dir=str(run_dir),
                                created_at=now(),
                                resumed_from=resumed_from,
                            )
                        )
                    )
                break
            except IntegrityError:
                continue
        else:
            raise MixtrainError("could not allocate a run number", "try again")
        shutil.rmtree(run_dir, ignore_errors=True)  # a stale folder from a deleted workflow of the same name
        try:
            with guard(run_dir.parent, "the run's folder"):
                run_dir.mkdir(parents=True, exist_ok=True)
        except MixtrainError:
            with self.engine.begin() as conn:  # no run without its folder
                conn.execute(delete(runs).where(runs.c.id == run_id))
            raise
        return self.run_by_id(run_id)

    def run_by_id(self, run_id: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs, workflows.c.name.label("workflow"))
                .join(workflows, workflows.c.id == runs.c.workflow_id)
                .where(runs.c.id == run_id)
            ).first()
        if row is None:
            raise NotFound(f"run id {run_id} not found")
        return _run_dict(row)

    def run(self, name: str, number: int) -> dict:
        wf = self._workflow(name)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs.c.id).where(and_(runs.c.workflow_id == wf["id"], runs.c.number == number))
            ).first()
        if row is None:
            raise NotFound(f"run #{number} of workflow {name!r} not found", f"see `mixtrain workflow runs {name}`")
        self.reconcile(row.id)
        return self.run_by_id(row.id)

    def runs(self, name: str, limit: int | None = None, offset: int = 0) -> builtins.list[dict]:
        """Newest first; ``limit``/``offset`` page through long histories in the database."""
        wf = self._workflow(name)
        q = select(runs, workflows.c.name.label("workflow")).join(workflows, workflows.c.id == runs.c.workflow_id)
        q = q.where(runs.c.workflow_id == wf["id"]).order_by(runs.c.number.desc())
        if limit:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self.engine.connect() as conn:
            rows = [_run_dict(r) for r in conn.execute(q)]
        if any(r["status"] in ACTIVE for r in rows):
            for r in rows:
                if r["status"] in ACTIVE:
                    self.reconcile(r["id"])
            with self.engine.connect() as conn:
                rows = [_run_dict(r) for r in conn.execute(q)]
        return rows

    def set_status(self, run_id: int, status: str, **values) -> bool:
        """Move a run to ``status``; terminal states are final, so a late writer cannot overwrite them."""
        values["status"] = status
        if status in TERMINAL:
            values.setdefault("finished_at", now())
        q = update(runs).where(runs.c.id == run_id).where(runs.c.status.in_(ACTIVE))
        with self.engine.begin() as conn:
            return conn.execute(q.values(**values)).rowcount == 1

    def record_launcher(self, run_id: int, pid: int, ident: str | None) -> None:
        """Note the supervisor's identity, so a death before it reports is detected (it may have already)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(runs).where(runs.c.id == run_id).where(runs.c.pid.is_(None)).values(pid=pid, pid_start=ident)
            )

    def record_worker(self, run_id: int, pid: int, started: str | None) -> None:
        """Note the worker's identity (whatever the status by now: a quick worker may have finished)."""
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(worker_pid=pid, worker_start=started))

    def reconcile(self, run_id: int) -> None:
        run = self.run_by_id(run_id)
        if run["status"] not in ACTIVE:
            return
        if procs.alive(run["pid"], run["pid_start"]) or procs.alive(run["worker_pid"], run["worker_start"]):
            return
        if run["pid"] is None:
            age = (now() - run["created_at"]).total_seconds()
            if age < NEVER_STARTED_AFTER:
                return
            reason = "the run never started (its launcher exited before starting it)"
        else:
            reason = f"the run's process (pid {run['pid']}) died without reporting — killed (SIGKILL/OOM) or the machine restarted"
        platform = _platform_error(Path(run["run_dir"]))
        if platform:  # the supervisor failed before it could record why (e.g. the DB itself was unusable)
            reason = f"the platform could not run the workflow: {platform}"
        self.set_status(run_id, "failed", error=reason)


def _platform_error(run_dir: Path) -> str | None:
    """The last line of the supervisor's own error file (its exceptions land there), if any."""
    try:
        lines = [
            ln for ln in (run_dir / RunFolder.SUPERVISOR_ERR).read_text(errors="replace").splitlines() if ln.strip()
        ]
    except OSError:
        return None
    return lines[-1].strip()[:500] if lines else None


def _run_dict(row) -> dict:
    d = dict(row._mapping)
    for key in ("created_at", "started_at", "finished_at"):
        if d.get(key) is not None and d[key].tzinfo is None:  # SQLite returns naive UTC
            import datetime as dt

            d[key] = d[key].replace(tzinfo=dt.UTC)
    end = d.get("finished_at") or (now() if d["status"] in ACTIVE and d.get("started_at") else None)
    d["duration"] = (end - d["started_at"]).total_seconds() if end and d.get("started_at") else None
    d["log_path"] = str(RunFolder(d["run_dir"]).log)
    return d


def _check_files(files: builtins.list[Path]) -> builtins.list[Path]:
    if not files:
        raise InvalidInput("no workflow file given", "pass the workflow's .py file")
    out = []
    for f in files:
        f = Path(f).expanduser()
        if not f.is_file():
            raise InvalidInput(f"workflow file not found: {f}", "check the path")
        if f.suffix != ".py":
            raise InvalidInput(f"{f.name} is not a Python file", "pass .py files")
        out.append(f.resolve())
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise InvalidInput("two workflow files share a name", "rename one")
    return out


def _run_inspector(main_file: Path, entrypoint: str | None) -> subprocess.CompletedProcess:
    """Import the user's file in a child of its own session, output to files rather than pipes.

    A module that starts a background process at import must not make us wait for pipes that
    process keeps open (a false 60 s timeout), nor outlive the inspection: its whole process group
    is killed once the inspector is done.
    """
    import signal
    import tempfile

    cmd = [sys.executable, "-m", "mixtrain.workflows.inspect_flow", str(main_file), entrypoint or ""]
    before = procs.children(os.getpid())
    reaper = procs.set_subreaper(True)  # a daemon that escapes the group (setsid) is re-parented to us
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=str(main_file.parent), start_new_session=True
            )
            try:
                code = child.wait(timeout=INSPECT_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                procs.kill_group(child.pid, signal.SIGKILL)  # the inspector and whatever the import started
                child.wait()
        finally:
            if reaper:
                procs.kill_adopted(before)
                procs.set_subreaper(False)
        if code is None:
            raise InvalidInput(
                f"importing {main_file.name} took over {INSPECT_TIMEOUT}s", "avoid heavy work at import time"
            )
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            cmd, code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )


def inspect_files(files: builtins.list[Path], entrypoint: str | None) -> dict:
    """Extract the input spec by importing the main file in a time-limited child process."""
    proc = _run_inspector(files[0], entrypoint)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    try:
        result = json.loads(last)
    except json.JSONDecodeError:
        result = {
            "error": f"inspecting {files[0].name} failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}"
        }
    if "error" in result:
        detail = proc.stderr.strip()
        if detail:
            sys.stderr.write(detail + "\n")
        raise InvalidInput(result["error"], result.get("fix") or "fix the workflow file and try again")
    return result
