"""What a workflow file declares: its input spec, read by importing it in a time-limited child process.

Split from the workflow store: registering a file checks and inspects it here first, and only then
writes anything. The child is ``inspect_flow.main`` in a fork of the CLI (a new interpreter,
``python -m mixtrain.workflows.inspect_flow``, from a threaded caller); a broken file cannot hang or
crash the caller, and whatever it starts at import time is killed with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.workflows import procs

INSPECT_TIMEOUT = 60


class InspectionFailed(InvalidInput):
    """Importing the workflow file failed; ``detail`` is the import's own output (its traceback), which
    the CLI prints above the one-line error so the user sees where their file broke."""

    def __init__(self, what: str, fix: str | None = None, detail: str = ""):
        super().__init__(what, fix)
        self.detail = detail


def check_files(files: list[Path]) -> list[Path]:
    """The workflow's files as absolute paths: they exist, are .py files and have distinct names."""
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
            if threading.active_count() == 1:  # the CLI: fork, reusing its imports (~0.5 s less than a new interpreter)
                pid = _fork_inspector(main_file, entrypoint, out.fileno(), err.fileno())
                code = _wait(pid, INSPECT_TIMEOUT)
                procs.kill_group(pid, signal.SIGKILL)  # the inspector and whatever the import started
                if code is None:
                    os.waitpid(pid, 0)
            else:  # a threaded program (the dashboard, a user's SDK call): forking it is not safe
                child = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=str(main_file.parent),
                    start_new_session=True,
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


def _fork_inspector(main_file: Path, entrypoint: str | None, out: int, err: int) -> int:
    """``inspect_flow.main`` in a forked child leading its own session, output to ``out``/``err``."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        # Our own streams on fds 1 and 2, whatever the caller had made of sys.stdout (a capture, a console).
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        os.chdir(main_file.parent)
        sys.argv = [sys.executable, str(main_file), entrypoint or ""]
        from mixtrain.workflows.inspect_flow import main

        code = main([str(main_file), entrypoint or ""])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None if it is still running after ``timeout`` s (not reaped then)."""
    import time

    end = time.monotonic() + timeout
    delay = 0.002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= end:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def inspect_files(files: list[Path], entrypoint: str | None) -> dict:
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
        raise InspectionFailed(
            result["error"], result.get("fix") or "fix the workflow file and try again", detail=proc.stderr.strip()
        )
    return result
