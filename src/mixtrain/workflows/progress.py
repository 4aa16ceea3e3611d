"""How a run tells an attached terminal what it is doing, without hiding anything from its log.

A workflow's log keeps everything. Three conventions let `mixtrain workflow run` (attached) show a
compact view of it instead of the raw stream:
  * phase lines start with ``PHASE`` ("● read dataset … 0.4 s") and are always shown;
  * verbose output (the trainer's) is wrapped in ``SECTION_BEGIN`` / ``SECTION_END`` lines: the
    attached view hides it (and shows it again if the run fails), `workflow logs` shows it all;
  * ``progress.json`` in the run folder holds the latest step/total/loss …, rewritten atomically
    by the trainer on every logged step; the attached view turns it into a progress line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mixtrain.workflows.runfolder import RunFolder

PHASE = "● "
SECTION_BEGIN = "┈┈ trainer output begins (hidden while attached; `mixtrain workflow logs` shows it) ┈┈"
SECTION_END = "┈┈ trainer output ends ┈┈"
PROGRESS_FILE = RunFolder.PROGRESS


def phase_line(text: str, seconds: float | None = None) -> str:
    return PHASE + text + (f" ({seconds:.1f} s)" if seconds is not None else "")


def write_progress(run_dir: Path | str, data: dict) -> None:
    path = Path(run_dir) / PROGRESS_FILE
    tmp = path.with_name(f".{PROGRESS_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_progress(run_dir: Path | str) -> dict | None:
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
