"""A run's Ray job: ``python -m mixtrain.workflows.rayjob RUN_ID`` (submitted by ``workflows.cluster``).

It is the run's supervisor, on the cluster: the same ``supervisor.main`` as a local run (status, log
with secrets redacted, timeout, the worker that records its own result). Secrets come from the secret
store by run id, never through the job's ``runtime_env``. A forked tail copies the run log to this job's
stdout, so Ray's job log — what `workflow logs` reads from any machine — is the run log. The job exits 0
only when the run completed, so Ray's job status agrees with the run's.

The entrypoint is ``exec``-ed by Ray's shell: this process leads the job's process group, which the
supervisor signals at the end of the run (leftovers) and Ray signals on stop.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from mixtrain.settings import load_settings
from mixtrain.workflows.registry import WorkflowRegistry
from mixtrain.workflows.runfolder import RunFolder


def main(run_id: int) -> int:
    settings = load_settings()
    reg = WorkflowRegistry(settings)
    run = reg.run_by_id(run_id)
    if run.status != "pending":
        return 0 if run.status == "completed" else 1  # cancelled before the cluster started it
    log_path = Path(run.run_dir) / RunFolder.LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.touch()
    from mixtrain.metadata.db import get_engine

    get_engine(settings.database_url).dispose()  # no DB connection may cross the fork
    tail = _start_tail(log_path, run.number)
    from mixtrain.workflows import supervisor

    if run.placement:
        os.environ[supervisor.RAY_JOB_VAR] = str(run.placement.get("job", ""))
    try:
        supervisor.main(run_id)
    finally:
        _wait(tail, 5)
        if not _exited(tail):
            os.kill(tail, signal.SIGKILL)
            os.waitpid(tail, 0)
    final = WorkflowRegistry(load_settings()).run_by_id(run_id)
    return 0 if final.status == "completed" else 1


def _start_tail(log_path: Path, number: int) -> int:
    """Fork the process that copies the run log to stdout (Ray's job log) until the run's closing line."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a cancel must not cut the last lines
        closing = f"\u25a0 run #{number} ".encode()
        seen = b""
        with open(log_path, "rb") as fh:
            while True:
                chunk = fh.read(65536)
                if chunk:
                    os.write(1, chunk)
                    seen = (seen + chunk)[-4096:]
                    if closing in seen and seen.endswith(b"\n"):
                        break
                    continue
                if os.getppid() != parent:  # the supervisor is gone: drain once more and stop
                    rest = fh.read()
                    if rest:
                        os.write(1, rest)
                    break
                time.sleep(0.05)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _exited(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _wait(pid: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not _exited(pid):
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
