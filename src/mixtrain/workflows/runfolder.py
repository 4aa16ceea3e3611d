"""The files of one run folder, named in one place.

Why: the run folder is a contract between the runner, the worker, the workflow, the CLI and the
dashboard; spelling its file names as literals in each of them let one drift from the others.
The engine's own files (log, output, progress, checkpoint declaration, failure record) are named
here. A workflow's own files are the workflow's business: it names them itself (the fine-tune's in
``mixtrain.vlm.files``) and *declares* the ones a generic face should show — its data report and its
config — in ``files.json``, so the dashboard shows them without knowing any workflow's file names.

What a checkpoint is, is the workflow's business too: when it starts training it declares, in
``checkpoints.json``, where checkpoints appear and how a complete one is recognised
(:class:`CheckpointLayout`); `workflow resume` reads that declaration and knows no trainer's files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

#: The declaration's key for where checkpoints are uploaded (object storage), if they are.
UPLOADED_TO = "uploaded_to"

#: What a generic face (the dashboard's run page) may show of a run, if the workflow declares it.
ROLES = ("report", "config")


@dataclass(frozen=True)
class CheckpointLayout:
    """How a workflow's checkpoints look: ``<output_dir>/<prefix><step>/`` holding ``files`` (each non-empty),
    complete when ``state_file`` (written last) parses and its ``step_key`` equals the folder's step."""

    files: tuple[str, ...]
    state_file: str
    step_key: str
    prefix: str = "checkpoint-"

    def checkpoints(self, output_dir: Path | str) -> list[Path]:
        """``<prefix><N>`` folders sorted by N as a number (checkpoint-100 after checkpoint-20)."""
        folder = Path(output_dir)
        if not folder.is_dir():
            return []
        pattern = re.escape(self.prefix) + r"\d+"
        found = [p for p in folder.iterdir() if p.is_dir() and re.fullmatch(pattern, p.name)]
        return sorted(found, key=self.step)

    def step(self, ckpt: Path) -> int:
        return int(ckpt.name[len(self.prefix) :])

    def is_complete(self, ckpt: Path) -> bool:
        """Every file present and the state file readable and at this checkpoint's step.

        A kill while saving leaves a folder without the state file, or with a truncated one.
        """
        if any(not (ckpt / f).is_file() or (ckpt / f).stat().st_size == 0 for f in self.files):
            return False
        try:
            state = json.loads((ckpt / self.state_file).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(state, dict) and state.get(self.step_key) == self.step(ckpt)

    def latest_complete(self, output_dir: Path | str) -> Path | None:
        return next((c for c in reversed(self.checkpoints(output_dir)) if self.is_complete(c)), None)

    def latest_uploaded(self, uri: str, settings=None) -> tuple[str, int] | None:
        """The newest checkpoint uploaded under ``uri`` (object storage) and its step, or None.

        Only complete checkpoints are uploaded, and ``objectstore.put_dir`` writes a folder's manifest
        last: a ``<prefix><N>/`` with its manifest is a whole checkpoint, one without is an unfinished upload.
        """
        from mixtrain import objectstore

        pattern = re.compile(re.escape(self.prefix) + r"(\d+)/" + re.escape(objectstore.MANIFEST))
        base = uri.rstrip("/") + "/"
        found = []
        for e in objectstore.listing(base, settings):
            m = pattern.fullmatch(e.uri[len(base) :])
            if m:
                found.append((objectstore.join(uri, f"{self.prefix}{m.group(1)}"), int(m.group(1))))
        return max(found, key=lambda f: f[1]) if found else None

    @classmethod
    def from_json(cls, data: dict) -> CheckpointLayout:
        return cls(
            files=tuple(data["files"]),
            state_file=data["state_file"],
            step_key=data["step_key"],
            prefix=data.get("prefix", "checkpoint-"),
        )


class RunFolder:
    """One run's folder and the engine's files in it."""

    LOG = "run.log"
    OUTPUT = "output.json"
    PROGRESS = "progress.json"
    CHECKPOINTS = "checkpoints.json"
    FAILURE = "failure.json"
    SUPERVISOR_ERR = "supervisor.err"
    DECLARED = "files.json"

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def output(self) -> Path:
        return self.path / self.OUTPUT

    @property
    def progress(self) -> Path:
        return self.path / self.PROGRESS

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def failure(self) -> Path:
        return self.path / self.FAILURE

    @property
    def supervisor_err(self) -> Path:
        return self.path / self.SUPERVISOR_ERR

    # -- what a workflow declares ---------------------------------------------------------------
    def declare(self, role: str, name: str) -> Path:
        """The workflow says which of its files plays ``role`` (one of ROLES) for generic faces."""
        if role not in ROLES:
            raise ValueError(f"unknown run-file role {role!r}; one of {ROLES}")
        declared = self.declared() if (self.path / self.DECLARED).is_file() else {}
        declared[role] = name
        write_atomic(self.path / self.DECLARED, json.dumps(declared))
        return self.path / name

    def declared(self) -> dict[str, str]:
        try:
            data = json.loads((self.path / self.DECLARED).read_text())
        except FileNotFoundError:
            return dict(_BEFORE_DECLARATIONS)
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if k in ROLES and isinstance(v, str)} if isinstance(data, dict) else {}

    def file(self, role: str) -> Path | None:
        """The file the workflow declared for ``role``, if it did (inside this folder only)."""
        name = self.declared().get(role)
        if not name or Path(name).name != name:
            return None
        return self.path / name

    def declare_checkpoints(
        self, output_dir: Path | str, layout: CheckpointLayout, uploaded_to: str | None = None, **extra: object
    ) -> None:
        """Where this run's checkpoints go and what one is, so `workflow resume` can find them if the run dies.

        ``uploaded_to``: the object-storage prefix each complete checkpoint is also uploaded under (team
        mode), so a resume on another machine — or after the local folder is gone — finds them there."""
        declared = {"output_dir": str(output_dir), "layout": asdict(layout), **extra}
        if uploaded_to:
            declared[UPLOADED_TO] = uploaded_to
        write_atomic(self.checkpoints, json.dumps(declared))

    def checkpoint_declaration(self) -> dict | None:
        try:
            data = json.loads(self.checkpoints.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


# -- run folders written before workflows declared their files (only the fine-tune wrote these then) --
# What the dashboard showed for a folder without files.json, and what a checkpoints.json without a
# "layout" meant (the Hugging Face Trainer's checkpoint-N, trainer_state.json last). New runs never
# reach these; they keep old homes' runs shown and resumable.
_BEFORE_DECLARATIONS = {"report": "data_report.json", "config": "axolotl.yml"}
UNDECLARED_CHECKPOINTS = CheckpointLayout(
    files=("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"),
    state_file="trainer_state.json",
    step_key="global_step",
)


def write_atomic(path: Path, text: str) -> None:
    """Readers (other processes, the dashboard) never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
