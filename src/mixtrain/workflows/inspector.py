"""What a workflow file declares: its input spec, read by importing it in a time-limited child process.

Split from the workflow store: registering a file checks and inspects it here first, and only then
writes anything. The child is ``python -m mixtrain.workflows.inspect_flow``; a broken file cannot hang
or crash the caller, and whatever it starts at import time is killed with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
