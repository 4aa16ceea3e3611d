"""`eval create`: check everything, record the eval, start its run — in that order.

Every check happens before anything is written, so bad input leaves no eval record, no run and no
results table. What the job will do is then fully described by the record: dataset snapshot pinned,
model versions resolved, generation settings filled in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mixtrain.errors import AlreadyExists, Conflict, InvalidInput
from mixtrain.evals.store import EvalStore, label
from mixtrain.names import NAME_RE, check_name
from mixtrain.records import RunStatus
from mixtrain.settings import Settings

if TYPE_CHECKING:
    from mixtrain.evals.spec import EvalSpec
    from mixtrain.records import Eval

DEFAULT_REFERENCE = "response"
RESULTS_SUFFIX = "-results"


def parse_models(models) -> list[tuple[str, int | None]]:
    """``"a:2,b"`` or ``["a:2", "b"]`` -> [("a", 2), ("b", None)]."""
    items = models.split(",") if isinstance(models, str) else list(models or [])
    items = [str(m).strip() for m in items]
    if not items or any(not m for m in items):
        raise InvalidInput(
            "--models lists no model" if not any(items) else f"--models has an empty entry: {models!r}",
            "pass MODEL[:VERSION][,MODEL...], e.g. --models base-llava,my-llava:2",
        )
    out: list[tuple[str, int | None]] = []
    for m in items:
        name, _, version = m.partition(":")
        check_name(name, "model")
        if version:
            if not version.isdigit() or int(version) < 1:
                raise InvalidInput(
                    f"bad model version in {m!r}", "write MODEL:VERSION with a version number ≥ 1, e.g. my-llava:2"
                )
            out.append((name, int(version)))
        else:
            out.append((name, None))
    return out


def plan(settings: Settings, name: str, spec: EvalSpec) -> dict:
    """Check an eval request against the stores; return what ``EvalStore.insert`` takes. Raises on the
    first problem. ``spec`` has already checked the values themselves (``EvalSpec``)."""
    from mixtrain.datasets.store import DatasetStore
    from mixtrain.models.inference import generation_settings
    from mixtrain.models.registry import ModelRegistry

    check_name(name, "eval")
    results = name + RESULTS_SUFFIX
    if not NAME_RE.fullmatch(results):
        raise InvalidInput(
            f"eval name {name!r} is too long for its results dataset {results!r}",
            f"use at most {64 - len(RESULTS_SUFFIX)} characters",
        )
    gen = generation_settings(spec.config)
    wanted = parse_models(spec.models)
    dataset, metric, reference_column = spec.dataset, spec.metric, spec.reference_column
    image_column, prompt_column = spec.image_column, spec.prompt_column

    store = EvalStore(settings)
    if store.exists(name):
        raise AlreadyExists(
            f"eval {name!r} already exists", f"pick another name, or `mixtrain eval delete {name}` first"
        )
    datasets = DatasetStore(settings)
    if datasets.catalog.table_exists(datasets._ident(results)):
        raise AlreadyExists(
            f"dataset {results!r} already exists (an eval's results go there)",
            f"pick another eval name, or `mixtrain dataset delete {results}`",
        )

    table = datasets.get(dataset)
    snapshot = table.current_snapshot()
    if snapshot is None:
        raise InvalidInput(f"dataset {dataset!r} has no data", "append rows to it first")
    columns = [f.name for f in table.schema().fields]
    for flag, col in (("--image_column", image_column), ("--prompt_column", prompt_column)):
        if col not in columns:
            raise InvalidInput(
                f"dataset {dataset!r} has no column {col!r} ({flag})",
                f"its columns are: {', '.join(columns)} — pass {flag} COLUMN",
            )
    reference = reference_column or DEFAULT_REFERENCE
    if reference not in columns:
        if metric != "none":
            raise InvalidInput(
                f"--metric {metric} needs a reference column, and dataset {dataset!r} has no column {reference!r}",
                f"its columns are: {', '.join(columns)} — pass --reference_column COLUMN, or --metric none for outputs only",
            )
        if reference_column is not None:
            raise InvalidInput(
                f"dataset {dataset!r} has no column {reference!r} (--reference_column)",
                f"its columns are: {', '.join(columns)}",
            )
        reference = None  # type: ignore[assignment]  # no reference column: outputs only

    registry = ModelRegistry(settings)
    resolved: list = []
    seen: dict = {}
    for model, version in wanted:
        info = registry.get(model, version)  # NotFound names the model or the version
        lab = label(model, info["version"])
        if lab in seen:
            raise InvalidInput(
                f"--models lists {model} version {info['version']} twice ({seen[lab]!r} and {f'{model}:{version}' if version else model!r})",
                "list each model version once",
            )
        seen[lab] = f"{model}:{version}" if version else model
        resolved.append({"name": model, "version": info["version"], "label": lab})

    return {
        "name": name,
        "dataset": dataset,
        "snapshot_id": snapshot.snapshot_id,
        "metric": metric,
        "results_dataset": results,
        "models": resolved,
        "config": {
            "image_column": image_column,
            "prompt_column": prompt_column,
            "reference_column": reference,
            "generation": gen,
            "limit": spec.limit,
            "batch_size": spec.batch_size,
        },
    }


def create(settings: Settings, name: str, spec: EvalSpec, *, fork: bool = False) -> Eval:
    """Record the eval and start its run; returns the record (with its run)."""
    from mixtrain.evals import engine

    p = plan(settings, name, spec)
    engine.ensure_workflow(settings)
    store = EvalStore(settings)
    store.insert(**p)
    try:
        run = engine.start(settings, name, fork=fork)
    except BaseException:
        store.delete(name)  # nothing half-written: no record without a run
        raise
    store.attach_run(name, run.id)
    return store.get(name)


def delete(settings: Settings, name: str) -> None:
    """Delete the record and its results dataset (refused while the eval runs)."""
    from mixtrain.datasets.store import DatasetStore
    from mixtrain.errors import NotFound

    store = EvalStore(settings)
    store.reconcile(name)
    rec = store.get(name)
    if rec.status.is_active:
        number = rec["run"]["number"] if rec["run"] else "?"
        raise Conflict(
            f"eval {name!r} is {rec['status']} (run #{number})", f"wait for it or `mixtrain eval cancel {name}`"
        )
    datasets = DatasetStore(settings)
    try:
        datasets.delete(store.results_name(name))
    except NotFound:
        pass  # a failed or cancelled eval never wrote its results
    store.delete(name)


def resume(settings: Settings, name: str, *, fork: bool = False) -> Eval:
    """Continue a failed, cancelled or timed-out eval under a new run: the models it finished are kept
    (stored as each finished), the rest are evaluated, then the results and scores are written as usual."""
    from mixtrain.datasets.store import DatasetStore
    from mixtrain.errors import InvalidInput, NotFound
    from mixtrain.evals import engine

    store = EvalStore(settings)
    store.reconcile(name)  # a killed eval's run has ended: settle it first
    rec = store.get(name)
    if rec.status.is_active:
        number = rec["run"]["number"] if rec["run"] else "?"
        raise Conflict(
            f"eval {name!r} is still {rec['status']} (run #{number})", f"wait for it or `mixtrain eval cancel {name}`"
        )
    if rec.status == RunStatus.COMPLETED:
        raise InvalidInput(f"eval {name!r} completed; there is nothing to resume", f"see `mixtrain eval get {name}`")
    try:  # a run killed between writing the results table and recording completion: that table is stale
        DatasetStore(settings).delete(store.results_name(name))
    except NotFound:
        pass
    engine.ensure_workflow(settings)
    run = engine.start(settings, name, fork=fork)
    if not store.reopen(name, run.id):  # another resume got there first
        engine.cancel(settings, run.number)
        now = store.get(name)
        number = now["run"]["number"] if now["run"] else "?"
        raise Conflict(
            f"eval {name!r} is already being resumed (run #{number})", f"follow it: `mixtrain eval logs {name} -f`"
        )
    return store.get(name)
