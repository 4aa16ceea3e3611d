"""Reconciliation: a run the database calls active whose processes are gone becomes ``failed``.

SIGKILL, the OOM killer or a reboot end a run without letting it report. Reading a run never
repairs it (reads have no side effects); the callers that show or wait on runs — `workflow
runs/get/logs`, the dashboard, ``runner.wait``/``follow``, `doctor` — call ``reconcile`` first, as
an explicit step. The user-visible result is the same as before: a killed run shows as failed, with
the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mixtrain.faults import StorageError
from mixtrain.metadata.db import now
from mixtrain.records import RunStatus
from mixtrain.workflows import procs
from mixtrain.workflows.runfolder import RunFolder

if TYPE_CHECKING:
    from mixtrain.workflows.registry import WorkflowRegistry

NEVER_STARTED_AFTER = 60  # seconds a pending run without a process may wait before it is failed


def reconcile(reg: WorkflowRegistry, run_id: int) -> bool:
    """Fail the run if it is active but none of its processes is alive; True when it did."""
    run = reg.run_by_id(run_id)
    if not run.status.is_active:
        return False
    if run.placement:
        return _reconcile_job(reg, run)
    if procs.alive(run.pid, run.pid_start) or procs.alive(run.worker_pid, run.worker_start):
        return False
    if run.pid is None:
        if (now() - run.created_at).total_seconds() < NEVER_STARTED_AFTER:
            return False
        reason = "the run never started (its launcher exited before starting it)"
    else:
        reason = (
            f"the run's process (pid {run.pid}) died without reporting — killed (SIGKILL/OOM) or the machine restarted"
        )
    platform = platform_error(Path(run.run_dir))
    if platform:  # the supervisor failed before it could record why (e.g. the DB itself was unusable)
        reason = f"the platform could not run the workflow: {platform}"
    try:
        failed = reg.set_status(run_id, RunStatus.FAILED, error=reason)
    except StorageError:  # a full or read-only disk: reads must still work; a later reconcile records it
        return False
    from mixtrain.workflows import diskspace

    diskspace.release(RunFolder(run.run_dir))  # its supervisor died before giving the reserve back
    return failed


def _reconcile_job(reg: WorkflowRegistry, run) -> bool:
    """A Ray run is alive while its job is: ask the cluster (not /proc), and record Ray's reason when it is not."""
    import time

    from mixtrain.workflows import cluster

    job = cluster.state(run.placement)
    if job is None or not job.is_terminal:
        return False  # running, pending — or the cluster cannot be asked now: nothing is concluded
    time.sleep(0.5)  # the worker records its result just before the job ends: let a late write land first
    if not reg.run_by_id(run.id).status.is_active:
        return False
    try:
        return reg.set_status(run.id, RunStatus.FAILED, error=cluster.reason(run.placement, job)[:4000])
    except StorageError:
        return False


def reconcile_workflow(reg: WorkflowRegistry, name: str) -> int:
    """Reconcile every active run of workflow ``name``; returns how many were failed."""
    return sum(reconcile(reg, run_id) for run_id in reg.active_run_ids(name))


def platform_error(run_dir: Path) -> str | None:
    """The last line of the supervisor's own error file (its exceptions land there), if any."""
    try:
        lines = [
            ln for ln in (run_dir / RunFolder.SUPERVISOR_ERR).read_text(errors="replace").splitlines() if ln.strip()
        ]
    except OSError:
        return None
    return lines[-1].strip()[:500] if lines else None
