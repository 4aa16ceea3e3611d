"""Typed records the SDK returns: a run's status as an enum, and one frozen dataclass per thing a user sees.

Each record is built once, from a database row or a store's answer (``from_row``), as mlflow builds its
entities in ``mlflow/entities``; every face (CLI, dashboard, server) reads attributes, never re-derives
them. ``to_dict()`` gives the plain dict the record was before it was typed — same keys, same order —
so ``--json`` output is unchanged.

Records also read like the mappings they replaced (``run["status"]``, ``{**model}``): the code in
other layers and in user scripts that indexed the old dicts keeps working while it moves to
attributes. They are frozen: a record is a snapshot of a row, never a handle to update it.

Timestamps are aware UTC: the schema's ``UTCDateTime`` columns convert them once, on read
(``mixtrain.metadata.schema``), so no record fixes a naive datetime itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterator, Mapping
from typing import Any


class RunStatus(enum.StrEnum):
    """A run's (or an eval's) state; the values are the strings stored in the database and printed."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def is_active(self) -> bool:
        """Still pending or running: it may change, it can be cancelled, it holds processes."""
        return self in ACTIVE

    @property
    def is_terminal(self) -> bool:
        """Finished one way or another: final, never overwritten."""
        return not self.is_active

    @property
    def tone(self) -> str:
        """How the faces colour it: ok, bad, live, wait or muted (the terminal and the dashboard map tones)."""
        return _TONE[self]


ACTIVE: tuple[RunStatus, ...] = (RunStatus.PENDING, RunStatus.RUNNING)
TERMINAL: tuple[RunStatus, ...] = tuple(s for s in RunStatus if s not in ACTIVE)
_TONE = {
    RunStatus.COMPLETED: "ok",
    RunStatus.FAILED: "bad",
    RunStatus.TIMEOUT: "bad",
    RunStatus.RUNNING: "live",
    RunStatus.PENDING: "wait",
    RunStatus.CANCELLED: "muted",
}


def status_tone(status: str | None) -> str:
    """The tone of a status string; "" for anything that is not a run status."""
    try:
        return RunStatus(status or "").tone
    except ValueError:
        return ""


class Record(Mapping):
    """Base of the records: attribute access, ``to_dict()``, and read-only mapping access for old callers."""

    def to_dict(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in self._keys()}

    def __getitem__(self, key: str) -> Any:
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def _keys(self) -> tuple[str, ...]:
        """The fields of the record's dict form (a field marked ``metadata={"dict": False}`` is attribute-only)."""
        return tuple(f.name for f in dataclasses.fields(self) if f.metadata.get("dict", True))  # type: ignore[arg-type]


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


UNKNOWN_USER = "?"  # how the faces show a row created before users were recorded (created_by NULL)


def shown_user(user: str | None) -> str:
    """A record's ``created_by`` for a table cell: the user, or ``?`` for a row older than migration 0006."""
    return user or UNKNOWN_USER


def json_default(obj: Any) -> Any:
    """``json.dumps(..., default=json_default)``: records as their dicts, anything else (datetimes) as text."""
    if isinstance(obj, Record):
        return obj.to_dict()
    return str(obj)


def _fields(cls, d: Mapping) -> dict:
    return {f.name: d.get(f.name) for f in dataclasses.fields(cls)}


# -- runs --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=True)
class Run(Record):
    """One run of a workflow: what it ran with, where its files are, how it ended."""

    id: int
    workflow_id: int
    number: int
    version: int
    status: RunStatus
    inputs: dict
    output: Any
    error: str | None
    run_dir: str
    pid: int | None
    pid_start: str | None
    worker_pid: int | None
    worker_start: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    resumed_from: dict | None
    resumes_run_id: int | None  # the run a `workflow resume` continues (one active resume per run)
    created_by: str | None  # MIXTRAIN_USER of who started it; None: a run from before users were recorded
    placement: dict | None  # None: a run on this machine; a Ray job: {"backend": "ray", "address", "job", "num_nodes"}
    workflow: str
    duration: float | None  # seconds from start to finish (to now while it runs); None before it starts
    log_path: str

    @classmethod
    def from_row(cls, row) -> Run:
        """From a ``runs`` row joined with its workflow's name (``workflow``)."""
        from mixtrain.workflows.runfolder import RunFolder  # names every file of a run

        d = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
        status = RunStatus(d["status"])
        started = d.get("started_at")
        end = d.get("finished_at") or (dt.datetime.now(dt.UTC) if status.is_active and started is not None else None)
        d.update(
            status=status,
            duration=(end - started).total_seconds() if end and started else None,
            log_path=str(RunFolder(d["run_dir"]).log),
        )
        return cls(**_fields(cls, d))

    @property
    def is_active(self) -> bool:
        return self.status.is_active


@dataclasses.dataclass(frozen=True, eq=True)
class WorkflowVersion(Record):
    version: int
    created_at: dt.datetime
    source: str


@dataclasses.dataclass(frozen=True, eq=True)
class Workflow(Record):
    """A workflow as `workflow get` shows it: its latest version's inputs, all versions, recent runs."""

    name: str
    description: str
    created_at: dt.datetime
    entrypoint: str
    version: int
    versions: list[WorkflowVersion]
    inputs: list[dict]
    resources: dict
    doc: str
    runs: list[Run]


@dataclasses.dataclass(frozen=True, eq=True)
class WorkflowSummary(Record):
    """A line of `workflow list`."""

    name: str
    description: str
    created_at: dt.datetime
    version: int
    runs: int  # how many runs it has


# -- models ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=True)
class ModelVersion(Record):
    """One registered version of a model: base, adapter, lineage (dataset snapshot, run, params)."""

    id: int
    model_id: int
    version: int
    base_model: str
    model_type: str
    adapter_path: str
    train_loss: float | None
    lineage: dict
    created_at: dt.datetime
    created_by: str | None  # MIXTRAIN_USER of whoever registered it (a run's user); None: before users were recorded
    name: str

    @classmethod
    def from_row(cls, row, name: str | None = None) -> ModelVersion:
        d = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
        if name is not None:
            d["name"] = name
        return cls(**_fields(cls, d))


@dataclasses.dataclass(frozen=True, eq=True)
class ModelEvalScore(Record):
    """A model version's score in one eval (what `model get` lists under "evals")."""

    eval: str
    version: int
    label: str
    dataset: str
    metric: str
    status: RunStatus
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None = dataclasses.field(default=None, metadata={"dict": False})  # rows scored (the dashboard shows it)


# -- datasets ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=True)
class DatasetSummary(Record):
    """A dataset's current state: schema, row count, snapshot (version) and where its files are."""

    name: str
    description: str
    rows: int
    columns: list[dict]
    version: int | None
    versions: int
    location: str
    metadata_location: str
    source: str
    created_by: str | None = None  # MIXTRAIN_USER of its creator; None: created before users were recorded

    @classmethod
    def from_dict(cls, d: Mapping) -> DatasetSummary:
        return cls(**_fields(cls, d))


# -- evals -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=True)
class Eval(Record):
    """An eval: what was evaluated (dataset snapshot, model versions, settings) and how each model scored."""

    name: str
    dataset: str
    snapshot_id: int | None
    metric: str
    status: RunStatus
    error: str | None
    config: dict
    created_at: dt.datetime
    finished_at: dt.datetime | None
    run: dict | None  # {"workflow", "number"} of the run that computes it
    results_dataset: str | None  # named once it exists (a completed eval)
    models: list[dict]  # [{"name", "version", "label"}] in the order given
    scores: dict  # {label: {mean, ci_low, ci_high, n, failed, generation_s, failures}}
    comparison: dict | None
    created_by: str | None = None  # MIXTRAIN_USER of its creator; None: created before users were recorded

    @property
    def labels(self) -> list[str]:
        return [m["label"] for m in self.models]


# -- secrets -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=True)
class SecretInfo(Record):
    """A secret's name and dates — never its value."""

    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
