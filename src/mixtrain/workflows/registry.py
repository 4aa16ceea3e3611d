"""The workflow store: workflows, their versions and their runs in the metadata DB.

Reads return typed records (``mixtrain.records``) and have no side effects. Two jobs that used to
live here have their own modules: checking and importing a workflow file (``workflows.inspector``)
and failing runs whose processes died (``workflows.liveness`` — an explicit step callers invoke,
also reachable as ``WorkflowRegistry.reconcile``).
"""

from __future__ import annotations

import builtins
import os
import shutil
from pathlib import Path

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from mixtrain import health
from mixtrain.errors import AlreadyExists, Conflict, MixtrainError, NotFound
from mixtrain.faults import guard
from mixtrain.health import Finding
from mixtrain.metadata.db import get_engine, inserted_id, now
from mixtrain.metadata.schema import runs, workflow_versions, workflows
from mixtrain.names import check_name
from mixtrain.records import ACTIVE, Run, RunStatus, Workflow, WorkflowSummary, WorkflowVersion
from mixtrain.settings import Settings
from mixtrain.workflows.inspector import check_files, inspect_files


class WorkflowRegistry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = get_engine(settings.database_url)

    # -- health (asked by `mixtrain doctor`) -------------------------------------------------------
    def check(self, fix: bool = False) -> builtins.list[Finding]:
        """Temp files of interrupted writes (version copies, run outputs, image downloads) and runs stuck as running."""
        import time

        from mixtrain.workflows import procs

        out: builtins.list[Finding] = []
        wf, runs_dir = self.settings.workflows_dir, self.settings.runs_dir
        found = builtins.list(wf.glob("*/v*.tmp*")) if wf.exists() else []
        found += builtins.list(runs_dir.glob("*/*/.output.json.*.tmp")) if runs_dir.exists() else []
        cache = self.settings.image_cache  # a download interrupted mid-write (images.resolve's .part files)
        found += builtins.list(cache.rglob("*.part")) if cache.exists() else []
        found = [p for p in found if time.time() - p.stat().st_mtime > 60]
        if not found:
            out.append(health.ok("no temp files of interrupted writes"))
        else:
            if fix:
                for p in found:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            out.append(
                health.problem(
                    f"{len(found)} temp file(s) of interrupted writes: {', '.join(str(p) for p in found[:3])}",
                    "run `mixtrain doctor --fix`",
                    fixed=fix,
                )
            )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    runs.c.id, runs.c.pid, runs.c.pid_start, runs.c.worker_pid, runs.c.worker_start, runs.c.placement
                ).where(runs.c.status.in_(ACTIVE))
            ).all()
        stuck = [
            r.id
            for r in rows
            if r.pid
            and not r.placement  # a Ray run's processes are on the cluster: its job says (liveness.reconcile)
            and not procs.alive(r.pid, r.pid_start)
            and not procs.alive(r.worker_pid, r.worker_start)
        ]
        if not stuck:
            out.append(health.ok(f"{len(rows)} active run(s), none stuck"))
            return out
        if fix:
            for run_id in stuck:
                self.reconcile(run_id)
        out.append(
            health.problem(
                f"{len(stuck)} run(s) marked running have no process left",
                "run `mixtrain doctor --fix` (or any `workflow runs`) to mark them failed",
                fixed=fix,
            )
        )
        return out

    def _run(self, row) -> Run:
        """A run record with its folder found from this home (stored relative to it: the home can move)."""
        d = dict(row._mapping)
        d["run_dir"] = self.settings.home_path(d["run_dir"])
        return Run.from_row(d)

    # -- workflows ---------------------------------------------------------------------------------
    def create(
        self, name: str, files: builtins.list[Path], description: str = "", entrypoint: str | None = None
    ) -> Workflow:
        check_name(name, "workflow")
        with self.engine.connect() as conn:
            if conn.execute(select(workflows.c.id).where(workflows.c.name == name)).first():
                raise AlreadyExists(
                    f"workflow {name!r} already exists", f"use `mixtrain workflow update {name} FILE` for a new version"
                )
        files = check_files(files)
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
    ) -> Workflow:
        wf = self._workflow(name)
        files = check_files(files)
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
                source_dir=self.settings.store_path(dest),
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
        return self._version_dict(row)

    def _version_dict(self, row) -> dict:
        d = dict(row._mapping)
        d["source_dir"] = self.settings.home_path(d["source_dir"])
        return d

    def versions(self, name: str) -> builtins.list[dict]:
        wf = self._workflow(name)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(workflow_versions)
                .where(workflow_versions.c.workflow_id == wf["id"])
                .order_by(workflow_versions.c.version)
            )
            return [self._version_dict(r) for r in rows]

    def describe(self, name: str) -> Workflow:
        wf = self._workflow(name)
        latest = self.latest_version(name)
        return Workflow(
            name=wf["name"],
            description=wf["description"],
            created_at=wf["created_at"],
            entrypoint=latest["entrypoint"],
            version=latest["version"],
            versions=[
                WorkflowVersion(version=v["version"], created_at=v["created_at"], source=v["source_dir"])
                for v in self.versions(name)
            ],
            inputs=latest["spec"]["inputs"],
            resources=latest["spec"]["resources"],
            doc=latest["spec"].get("doc", ""),
            runs=self.runs(name, limit=5),
        )

    def list(self) -> builtins.list[WorkflowSummary]:
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
        return [WorkflowSummary(**r, runs=counts.get(r["name"], 0)) for r in out]

    def delete(self, name: str) -> None:
        wf = self._workflow(name)
        self.reconcile_workflow(name)  # a run whose process died does not block the delete
        active = [r for r in self.runs(name) if r.status.is_active]
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
    def new_run(
        self, name: str, version: int, inputs: dict, resumed_from: dict | None = None, resumes: Run | None = None
    ) -> Run:
        """Insert a pending run with the next number; concurrent callers get distinct numbers.

        ``resumes``: the run this one continues; the database admits one active resume per run.
        """
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
                                status=RunStatus.PENDING,
                                inputs=inputs,
                                run_dir=self.settings.store_path(run_dir),
                                created_at=now(),
                                resumed_from=resumed_from,
                                resumes_run_id=resumes.id if resumes else None,
                                created_by=self.settings.user,
                            )
                        )
                    )
                break
            except IntegrityError:
                if resumes:
                    self._refuse_second_resume(resumes)
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

    def _refuse_second_resume(self, origin: Run) -> None:
        with self.engine.connect() as conn:
            number = conn.execute(
                select(runs.c.number).where(runs.c.resumes_run_id == origin.id).where(runs.c.status.in_(ACTIVE))
            ).scalar()
        if number is not None:
            raise Conflict(
                f"run #{origin.number} of {origin.workflow!r} is already being resumed by run #{number}",
                f"follow it with `mixtrain workflow logs {origin.workflow} {number} -f`",
            )

    def run_by_id(self, run_id: int) -> Run:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs, workflows.c.name.label("workflow"))
                .join(workflows, workflows.c.id == runs.c.workflow_id)
                .where(runs.c.id == run_id)
            ).first()
        if row is None:
            raise NotFound(f"run id {run_id} not found")
        return self._run(row)

    def run(self, name: str, number: int) -> Run:
        """Run ``number`` of workflow ``name`` as stored (see ``reconcile`` for runs whose process died)."""
        wf = self._workflow(name)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs.c.id).where(and_(runs.c.workflow_id == wf["id"], runs.c.number == number))
            ).first()
        if row is None:
            raise NotFound(f"run #{number} of workflow {name!r} not found", f"see `mixtrain workflow runs {name}`")
        return self.run_by_id(row.id)

    def runs(self, name: str, limit: int | None = None, offset: int = 0, user: str | None = None) -> builtins.list[Run]:
        """Newest first; ``limit``/``offset`` page through long histories in the database; ``user``: only
        the runs that user started."""
        wf = self._workflow(name)
        q = select(runs, workflows.c.name.label("workflow")).join(workflows, workflows.c.id == runs.c.workflow_id)
        q = q.where(runs.c.workflow_id == wf["id"]).order_by(runs.c.number.desc())
        if user is not None:
            q = q.where(runs.c.created_by == user)
        if limit:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self.engine.connect() as conn:
            return [self._run(r) for r in conn.execute(q)]

    def active_run_ids(self, name: str) -> builtins.list[int]:
        """Ids of the workflow's pending or running runs, oldest first."""
        wf = self._workflow(name)
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(runs.c.id)
                    .where(runs.c.workflow_id == wf["id"])
                    .where(runs.c.status.in_(ACTIVE))
                    .order_by(runs.c.number)
                ).scalars()
            )

    def set_status(self, run_id: int, status: str, **values) -> bool:
        """Move a run to ``status``; terminal states are final, so a late writer cannot overwrite them."""
        values["status"] = RunStatus(status)
        if values["status"].is_terminal:
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

    def record_placement(self, run_id: int, placement: dict) -> None:
        """Note where the run runs (a Ray job), so every home sharing this database asks the cluster about it."""
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(placement=placement))

    def record_worker(self, run_id: int, pid: int, started: str | None) -> None:
        """Note the worker's identity (whatever the status by now: a quick worker may have finished)."""
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(worker_pid=pid, worker_start=started))

    def reconcile(self, run_id: int) -> bool:
        """The explicit liveness step (``workflows.liveness.reconcile``): fail the run if its processes died."""
        from mixtrain.workflows import liveness

        return liveness.reconcile(self, run_id)

    def reconcile_workflow(self, name: str) -> int:
        """Reconcile every active run of ``name``; returns how many were failed."""
        from mixtrain.workflows import liveness

        return liveness.reconcile_workflow(self, name)
