"""A run's own process: ``python -m mixtrain.workflows.supervisor RUN_ID`` (started detached by the runner).

It forks the worker (which imports and runs the user's workflow), relays the worker's output into
the run log with secret values redacted, enforces the timeout, and records how the worker ended if
the worker could not (crash, signal). The worker records its own success or failure, so a run still
finishes correctly if this supervisor is killed.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path

from mixtrain.metadata.db import get_engine, now
from mixtrain.settings import load_settings
from mixtrain.workflows import procs
from mixtrain.workflows.registry import WorkflowRegistry


def main(run_id: int) -> int:
    settings = load_settings()
    reg = WorkflowRegistry(settings)
    run = reg.run_by_id(run_id)
    if run["status"] != "pending":
        return 0  # cancelled before it started
    pid, pid_start = os.getpid(), procs.identity(os.getpid())
    version = _version(reg, run)
    spec = version["spec"]
    secrets = _secrets(settings)
    run_dir = Path(run["run_dir"])
    log = open(run_dir / "run.log", "ab", buffering=0)
    redact = _redactor(secrets.values())
    log.write(f"▶ run #{run['number']} of workflow {run['workflow']} (version {run['version']}) — {now():%Y-%m-%d %H:%M:%S} UTC\n".encode())
    for warning in resource_warnings(spec.get("resources") or {}):
        log.write(f"⚠ {warning}\n".encode())
    timeout = (spec.get("resources") or {}).get("timeout")

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cancel/timeout signal the group; we finish the bookkeeping
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Mark the run running before the worker exists: a quick worker's result must not land first (the
    # late "running" would then be refused and the run would have no start time). A cancel that came
    # in meanwhile makes this refuse, and nothing starts.
    if not reg.set_status(run["id"], "running", started_at=now(), pid=pid, pid_start=pid_start):
        final = reg.run_by_id(run["id"])
        log.write(f"■ run #{run['number']} {final['status']}\n".encode())
        log.close()
        return 0
    get_engine(settings.database_url).dispose()  # no DB connection may cross the fork
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # ---- worker ----
        os.close(read_fd)
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        log.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        env = {
            **secrets,
            "MIXTRAIN_RUN_ID": str(run["id"]),
            "MIXTRAIN_RUN_NUMBER": str(run["number"]),
            "MIXTRAIN_WORKFLOW": run["workflow"],
            "MIXTRAIN_RUN_DIR": str(run_dir),
            "PYTHONUNBUFFERED": "1",
            "MIXTRAIN_SECRET_NAMES": ",".join(sorted(secrets)),  # names only: the worker redacts its error/output
        }
        os.environ.update(env)
        code = 1
        try:
            from mixtrain.workflows.worker import execute

            code = execute(settings, run, version)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    # ---- supervisor ----
    os.close(write_fd)
    reg.record_worker(run["id"], child, procs.identity(child))
    deadline = time.monotonic() + timeout if timeout else None
    status = _relay(read_fd, log, redact, child, deadline)
    if status == "timeout":
        msg = f"timed out after {timeout}s (_mixflow_timeout)"
        reg.set_status(run["id"], "timeout", error=msg)
        log.write(f"✖ {msg}\n".encode())
        procs.kill_group(os.getpgrp(), signal.SIGTERM)  # we ignore SIGTERM ourselves
        if not _wait_child(child, 10):
            os.kill(child, signal.SIGKILL)  # not the group: we still have the closing line to write
    _, wstatus = os.waitpid(child, 0)
    final = reg.run_by_id(run["id"])
    if final["status"] in ("pending", "running"):
        if os.WIFSIGNALED(wstatus):
            reason = f"the workflow process was killed by {signal.Signals(os.WTERMSIG(wstatus)).name}"
        else:
            reason = f"the workflow process exited with code {os.WEXITSTATUS(wstatus)} without reporting a result"
        reg.set_status(run["id"], "failed", error=reason)
        log.write(f"✖ {reason}\n".encode())
    final = reg.run_by_id(run["id"])
    log.write(f"■ run #{run['number']} {final['status']}\n".encode())
    log.close()
    procs.kill_group(os.getpgrp(), signal.SIGTERM)  # leftovers of the run (e.g. orphaned dataloaders)
    if status == "timeout":
        procs.kill_group(os.getpgrp(), signal.SIGKILL)  # whatever ignored SIGTERM; all is recorded, so this may end us too
    return 0


def _relay(fd: int, log, redact, child: int, deadline: float | None) -> str:
    """Copy worker output to the log until it closes and the worker exits; 'timeout' if time runs out."""
    pending = b""
    open_ = True
    while True:
        wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        if open_:
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_ = False
                else:
                    pending += chunk
                    cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
                    if cut >= 0 or len(pending) > 8192:
                        # Without a line end, hold back enough bytes that a secret split here is still caught.
                        end = cut + 1 if cut >= 0 else len(pending) - redact.keep
                        log.write(redact(pending[:end]))
                        pending = pending[end:]
        else:
            time.sleep(min(wait, 0.01))  # output closed: the worker is exiting, so look again soon
        if not open_ and _exited(child):
            break
        if open_ and _exited(child) and not select.select([fd], [], [], 0.2)[0]:
            break  # worker gone; a grandchild holds the pipe open
        if deadline is not None and time.monotonic() >= deadline:
            if pending:
                log.write(redact(pending))
            return "timeout"
    if pending:
        log.write(redact(pending))
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


def _redactor(values):
    secrets = sorted({v.encode() for v in values if len(v) >= 4}, key=len, reverse=True)

    def redact(data: bytes) -> bytes:
        for s in secrets:
            data = data.replace(s, b"***")
        return data

    redact.keep = max((len(s) for s in secrets), default=1) - 1
    return redact


def _secrets(settings) -> dict[str, str]:
    from mixtrain.secrets.store import SecretStore

    return SecretStore(settings).environment()


def _version(reg: WorkflowRegistry, run: dict) -> dict:
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
