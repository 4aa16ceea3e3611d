"""A run's own process: ``python -m mixtrain.workflows.supervisor RUN_ID`` (started detached by the runner).

It forks a log relay (the worker's output → the run log, secret values redacted) and the worker
(which imports and runs the user's workflow), enforces the timeout, and records how the worker ended
if the worker could not (crash, signal). The worker records its own success or failure and its output
never passes through this process, so a run still finishes correctly if this supervisor is killed.
A failure of the platform itself is recorded as the run's error.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

from mixtrain.faults import free_bytes
from mixtrain.metadata.db import get_engine, now
from mixtrain.settings import load_settings
from mixtrain.workflows import diskspace, procs
from mixtrain.workflows.redact import NAMES_VAR, Redactor, StreamRedactor
from mixtrain.workflows.registry import WorkflowRegistry
from mixtrain.workflows.runfolder import RunFolder


def main(run_id: int) -> int:
    settings = load_settings()
    reg = WorkflowRegistry(settings)
    run = reg.run_by_id(run_id)
    if run["status"] != "pending":
        return 0  # cancelled before it started
    run_dir = Path(run["run_dir"])
    with open(run_dir / RunFolder.LOG, "ab", buffering=0) as log:
        try:
            return _supervise(settings, reg, run, log)
        except BaseException as exc:
            # A failure of the platform itself (unreadable key, full disk, broken DB...) is the run's
            # recorded error, shown by `workflow runs/get/logs` — not a mystery "died without reporting".
            traceback.print_exc()  # the full story stays in supervisor.err for a bug report
            folder = RunFolder(run_dir)
            if diskspace.disk_full(exc):
                reason = diskspace.reason(exc, folder)
            else:
                reason = f"the platform could not run the workflow: {_reason(exc)}"
            _write(log, f"✖ {reason}\n".encode())
            diskspace.with_reserve(folder, lambda: reg.set_status(run["id"], "failed", error=reason[:4000]))
            return 1
        finally:
            diskspace.release(RunFolder(run_dir))


def _reason(exc: BaseException) -> str:
    from mixtrain.errors import MixtrainError

    if isinstance(exc, MixtrainError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _supervise(settings, reg: WorkflowRegistry, run: Mapping, log) -> int:
    pid, pid_start = os.getpid(), procs.identity(os.getpid())
    version = _version(reg, run)
    spec = version["spec"]
    run_dir = Path(run["run_dir"])
    _write(
        log,
        f"▶ run #{run['number']} of workflow {run['workflow']} (version {run['version']}) — {now():%Y-%m-%d %H:%M:%S} UTC\n".encode(),
    )
    secrets = _secrets(settings)
    redactor = Redactor(secrets.values())
    for warning in resource_warnings(spec.get("resources") or {}):
        _write(log, f"⚠ {warning}\n".encode())
    timeout = (spec.get("resources") or {}).get("timeout")

    # cancel/timeout signal the group; we finish the bookkeeping (noting that a SIGTERM came: see _why_killed)
    signal.signal(signal.SIGTERM, _note_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Mark the run running before the worker exists: a quick worker's result must not land first (the
    # late "running" would then be refused and the run would have no start time). A cancel that came
    # in meanwhile makes this refuse, and nothing starts.
    if not reg.set_status(run["id"], "running", started_at=now(), pid=pid, pid_start=pid_start):
        final = reg.run_by_id(run["id"])
        _write(log, f"■ run #{run['number']} {final['status']}\n".encode())
        return 0
    folder = RunFolder(run_dir)
    diskspace.prepare(folder)  # so the run's end can be recorded even if it fills the disk
    get_engine(settings.database_url).dispose()  # no DB connection may cross the fork
    read_fd, write_fd = os.pipe()
    # The worker's output goes through a relay process of its own, not through us: if this supervisor
    # is killed, the worker keeps a reader (no SIGPIPE), its log keeps growing, and it still records its
    # result — a fine-tune whose supervisor dies still registers its model.
    relay = _start_relay(read_fd, write_fd, run_dir / RunFolder.LOG, redactor, run, timeout)
    os.close(read_fd)
    child = os.fork()
    if child == 0:  # ---- worker ----
        try:
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
            log.close()
        except BaseException:
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        env = {
            **secrets,
            "MIXTRAIN_RUN_ID": str(run["id"]),
            "MIXTRAIN_RUN_NUMBER": str(run["number"]),
            "MIXTRAIN_WORKFLOW": run["workflow"],
            "MIXTRAIN_RUN_DIR": str(run_dir),
            "PYTHONUNBUFFERED": "1",
            NAMES_VAR: ",".join(sorted(secrets)),  # names only: the worker redacts its error/output
        }
        if run.get("created_by"):  # what the run registers (models, datasets) is the run's user's doing
            env["MIXTRAIN_USER"] = run["created_by"]
        os.environ.update(env)
        code = 1
        try:
            from mixtrain.workflows.worker import execute

            code = execute(settings, run, version)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    # ---- supervisor ----
    os.close(write_fd)
    reg.record_worker(run["id"], child, procs.identity(child))
    deadline = time.monotonic() + timeout if timeout else None
    status = _wait_worker(child, deadline)
    if status == "timeout":
        msg = f"timed out after {timeout}s (_mixflow_timeout)"
        reg.set_status(run["id"], "timeout", error=msg)
        procs.kill_group(os.getpgrp(), signal.SIGTERM)  # we and the relay ignore SIGTERM
        if not _wait_child(child, 10):
            os.kill(child, signal.SIGKILL)  # not the group: we still have the closing line to write
    _, wstatus = os.waitpid(child, 0)
    # The relay ends when every writer of the pipe is gone; a grandchild that keeps it open must not
    # hold up the closing line.
    _wait_child(relay, 2)
    final = reg.run_by_id(run["id"])
    if status == "timeout":
        _write(log, f"✖ timed out after {timeout}s (_mixflow_timeout)\n".encode())
    if final.status.is_active:
        if os.WIFSIGNALED(wstatus):
            reason = _why_killed(signal.Signals(os.WTERMSIG(wstatus)))
        else:
            reason = f"the workflow process exited with code {os.WEXITSTATUS(wstatus)} without reporting a result"
        if (free_bytes(run_dir) or 0) < diskspace.RESERVE_BYTES * 2:  # why it could not report, likely
            reason += f" — disk full at {run_dir}: {diskspace.space(run_dir)}"
        diskspace.with_reserve(folder, lambda: reg.set_status(run["id"], "failed", error=reason))
        _write(log, f"✖ {reason}\n".encode())
    final = reg.run_by_id(run["id"])
    diskspace.release(folder)  # recorded: the reserve goes before the closing line that followers wait for
    _write(log, f"■ run #{run['number']} {final['status']}\n".encode())
    procs.kill_group(os.getpgrp(), signal.SIGTERM)  # leftovers of the run (e.g. orphaned dataloaders)
    if status == "timeout":
        procs.kill_group(
            os.getpgrp(), signal.SIGKILL
        )  # whatever ignored SIGTERM; all is recorded, so this may end us too
    _wait_child(relay, 1)
    return 0


_sigterms: list[float] = []
RAY_JOB_VAR = "MIXTRAIN_RAY_JOB"  # set by workflows.rayjob: this supervisor is a Ray job's


def _note_sigterm(signum, frame) -> None:
    _sigterms.append(time.monotonic())


def _why_killed(sig: signal.Signals) -> str:
    job = os.environ.get(RAY_JOB_VAR)
    if job and sig == signal.SIGTERM and _sigterms:  # only Ray's stop signals every process of a job
        return f"its Ray job {job} was stopped outside mixtrain (the dashboard or `ray job stop`): the workflow process got SIGTERM"
    return f"the workflow process was killed by {sig.name}"


def _start_relay(
    read_fd: int, write_fd: int, log_path: Path, redactor: Redactor, run: Mapping, timeout: float | None = None
) -> int:
    """Fork the process that copies the worker's output into the run log, redacted.

    It ignores SIGTERM (a cancel must not cut the worker's last lines) and ends at end of output. If
    the supervisor died meanwhile, it takes over the supervisor's last duties: it enforces the run's
    time limit and writes the run's closing line from the recorded status.
    """
    import select

    supervisor = os.getpid()
    deadline = time.monotonic() + timeout if timeout else None
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        os.close(write_fd)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stream = StreamRedactor(redactor)
        with open(log_path, "ab", buffering=0) as log:
            while True:
                if deadline is not None and time.monotonic() >= deadline and os.getppid() != supervisor:
                    _enforce_timeout(log, run, timeout)
                    deadline = None
                if deadline is not None and not select.select([read_fd], [], [], 0.5)[0]:
                    continue
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                _write(log, stream.feed(chunk))
            _write(log, stream.flush())
            if os.getppid() != supervisor and not _has_closing_line(log_path, run["number"]):
                _close_orphaned_log(log, run)  # the supervisor is gone: nobody else will close the log
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _enforce_timeout(log, run: Mapping, timeout) -> None:
    """The supervisor's time limit, kept by the relay once the supervisor is gone."""
    reg = WorkflowRegistry(load_settings())
    current = reg.run_by_id(run["id"])
    msg = f"timed out after {timeout}s (_mixflow_timeout)"
    if not reg.set_status(run["id"], "timeout", error=msg):
        return  # it finished meanwhile
    _write(log, f"✖ {msg}\n".encode())
    worker = current["worker_pid"]
    if worker and procs.alive(worker, current["worker_start"]):
        procs.kill_group(os.getpgrp(), signal.SIGTERM)  # the relay ignores SIGTERM
        end = time.monotonic() + 10
        while time.monotonic() < end and procs.alive(worker, current["worker_start"]):
            time.sleep(0.1)
        if procs.alive(worker, current["worker_start"]):
            os.kill(worker, signal.SIGKILL)


def _write(log, data: bytes) -> None:
    """A full disk loses log lines, never the run: keep draining so the worker is never blocked."""
    if data:
        try:
            log.write(data)
        except OSError:
            pass


def _has_closing_line(log_path: Path, number: int) -> bool:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 1024))
            return f"\u25a0 run #{number} ".encode() in fh.read()
    except OSError:
        return False


def _close_orphaned_log(log, run: Mapping) -> None:
    diskspace.release(RunFolder(run["run_dir"]))
    settings = load_settings()
    reg = WorkflowRegistry(settings)
    final = reg.run_by_id(run["id"])
    if final.status.is_active:
        time.sleep(0.5)  # the worker records its result just before its output closes
        reg.reconcile(run["id"])
        final = reg.run_by_id(run["id"])
    _write(
        log,
        f"■ run #{run['number']} {final['status']} (its supervisor had died; the worker finished on its own)\n".encode(),
    )


def _wait_worker(child: int, deadline: float | None) -> str:
    """Wait for the worker to exit; 'timeout' if the run's time limit comes first."""
    while not _exited(child):
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
        time.sleep(0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))
    return "done"


def _exited(child: int) -> bool:
    """Poll without reaping, so the final waitpid still sees the status."""
    try:
        info = os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _wait_child(child: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _exited(child):
            return True
        time.sleep(0.1)
    return False


def _secrets(settings) -> dict[str, str]:
    from mixtrain.secrets.store import SecretStore

    return SecretStore(settings).environment()


def _version(reg: WorkflowRegistry, run: Mapping) -> dict:
    return next(v for v in reg.versions(run["workflow"]) if v["version"] == run["version"])


def resource_warnings(resources: dict) -> list[str]:
    """Compare the workflow's resource hints with this machine; hints are advice, not gates."""
    from mixtrain.hardware import nvidia_driver_present

    out = []
    gpu = resources.get("gpu")
    if gpu and not nvidia_driver_present():
        out.append(f"this workflow asks for a GPU ({gpu}) but none is available here — running on CPU (slow)")
    memory = resources.get("memory")
    total = _mem_total_mib()
    if memory and total and memory > total:
        out.append(f"this workflow asks for {memory} MiB of memory; this machine has {total} MiB")
    cpu = resources.get("cpu")
    if cpu and cpu > (os.cpu_count() or 1):
        out.append(f"this workflow asks for {cpu} CPUs; this machine has {os.cpu_count()}")
    return out


def _mem_total_mib() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
