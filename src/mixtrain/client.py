"""MixClient: the Python SDK facade. The CLI, the dashboard and the server call it and only render.

Every rule a user can see — which evals a model appears in, when models disagree on a row, how a
file of inputs is answered in batches, when a dead run is marked failed — lives below this class
and is reached through it, once. Methods return typed records (``mixtrain.records``).

Reads have no side effects. Runs (and evals) whose processes died are settled by an explicit step,
``reconcile_runs`` / ``reconcile_evals``, which the faces call before they show them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixtrain.settings import Settings, load_settings

if TYPE_CHECKING:
    from mixtrain.evals.spec import EvalSpec
    from mixtrain.records import (
        DatasetSummary,
        ModelEvalScore,
        ModelVersion,
        Run,
        SecretInfo,
        Workflow,
        WorkflowSummary,
    )
    from mixtrain.records import Eval as EvalRecord


class MixClient:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()

    # -- stores (lazy: each pulls in only what it needs) ---------------------------------------------
    @cached_property
    def datasets(self):
        from mixtrain.datasets.store import DatasetStore

        return DatasetStore(self.settings)

    @cached_property
    def secrets(self):
        from mixtrain.secrets.store import SecretStore

        return SecretStore(self.settings)

    @cached_property
    def workflows(self):
        from mixtrain.workflows.registry import WorkflowRegistry

        return WorkflowRegistry(self.settings)

    @cached_property
    def models(self):
        from mixtrain.models.registry import ModelRegistry

        return ModelRegistry(self.settings)

    @cached_property
    def evals(self):
        from mixtrain.evals.store import EvalStore

        return EvalStore(self.settings)

    # -- datasets ------------------------------------------------------------------------------------
    def create_dataset(
        self,
        name: str,
        file: str | Path,
        description: str = "",
        progress: Callable[[int], None] | None = None,
        **read,
    ) -> DatasetSummary:
        """A new dataset from a file or folder (CSV/TSV/Parquet/JSONL/JSON/HF/imagefolder/WebDataset), its
        images stored with it; ``progress(bytes_read)`` for large files. ``read``: ``fmt``, ``image_root``,
        ``prompt``, ``keep_image_refs`` (see `mixtrain dataset create --help`). What happened to the
        images is in ``last_import_report``."""
        self.datasets.create(name, file, description, progress, **read)
        return self.get_dataset_info(name)

    def register_dataset(self, name: str, metadata_location: str, description: str = "") -> DatasetSummary:
        """An existing Iceberg table, by its metadata JSON (no copy)."""
        self.datasets.register(name, metadata_location, description)
        return self.get_dataset_info(name)

    def append_dataset(
        self, name: str, file: str | Path, progress: Callable[[int], None] | None = None, **read
    ) -> DatasetSummary:
        """Rows from a file as a new dataset version (``read`` as for ``create_dataset``)."""
        self.datasets.append(name, file, progress, **read)
        return self.get_dataset_info(name)

    @property
    def last_import_report(self):
        """The last create/append's image report: images stored, bad images by row (never their bytes)."""
        return self.datasets.last_report

    def query(self, sql: str, *, snapshot_id: int | None = None, dataset: str | None = None, limit: int | None = None):
        """SQL (DuckDB) over the datasets the query names, at their current snapshots (or ``snapshot_id``
        for ``dataset``): a ``pyarrow.Table``. Example: ``MixClient().query("SELECT * FROM d WHERE x > 1")``."""
        from mixtrain.datasets.query import run_query

        return run_query(self.datasets, sql, name=dataset, snapshot_id=snapshot_id, limit=limit)

    def save_query(
        self, new: str, sql: str, *, dataset: str, snapshot_id: int | None = None, limit: int | None = None
    ) -> tuple[Any, DatasetSummary]:
        """Run ``query`` and keep its result as dataset ``new``, whose description records the source
        snapshot and the SQL. Checked before the query runs: the name, the source, ``new`` not taken.
        Returns (the result table, the new dataset's summary)."""
        from mixtrain.datasets.query import QUERY_DESCRIPTION, snapshot_of
        from mixtrain.errors import AlreadyExists
        from mixtrain.names import check_name

        check_name(new, "dataset")
        self.datasets.require(dataset)
        if new in self.datasets.names():
            raise AlreadyExists(f"dataset {new!r} already exists", "pick another name for --save")
        result = self.query(sql, dataset=dataset, snapshot_id=snapshot_id, limit=limit)
        snap = snapshot_of(self.datasets, dataset, snapshot_id)
        description = QUERY_DESCRIPTION.format(name=dataset, snapshot=snap, sql=" ".join(sql.split()))
        self.datasets.create_from_arrow(new, result, description, source=f"{dataset}@{snap}")
        return result, self.get_dataset_info(new)

    def get_dataset(self, name: str):
        """The dataset's PyIceberg table: ``.scan(snapshot_id=...).to_pandas()`` / ``.to_arrow()``."""
        return self.datasets.get(name)

    def get_dataset_info(self, name: str) -> DatasetSummary:
        from mixtrain.records import DatasetSummary

        return DatasetSummary.from_dict(self.datasets.summary(name))

    def list_datasets(self) -> list[str]:
        return self.datasets.names()

    def list_dataset_infos(self, user: str | None = None) -> list[DatasetSummary]:
        """Every dataset's summary (one deleted while listing is skipped); ``user``: only those that user created."""
        from mixtrain.errors import NotFound

        out = []
        for name in self.datasets.names() if user is None else self.datasets.names_created_by(user):
            try:
                out.append(self.get_dataset_info(name))
            except NotFound:
                continue
        return out

    def dataset_versions(self, name: str) -> list[dict]:
        """Its Iceberg snapshots, oldest first: version (snapshot id), timestamp_ms, operation, rows."""
        return self.datasets.versions(name)

    def head_dataset(self, name: str, n: int = 5, version: int | None = None):
        """The first ``n`` rows (a pandas frame) at snapshot ``version`` (default: current)."""
        table = self.datasets.get(name)
        if version is not None and table.snapshot_by_id(version) is None:
            from mixtrain.errors import NotFound

            raise NotFound(f"dataset {name!r} has no version {version}", f"see `mixtrain dataset versions {name}`")
        return table.scan(snapshot_id=version, limit=n).to_pandas()

    def require_dataset(self, name: str) -> None:
        """NotFound unless it exists; reads no table file (a damaged dataset can still be deleted)."""
        self.datasets.require(name)

    def delete_dataset(self, name: str) -> None:
        self.datasets.delete(name)

    def dataset_image_refs(self, name: str, cell) -> list[str]:
        """What an image cell of dataset ``name`` holds, as references ``resolve_image`` accepts (a path,
        a URL, a stored image's file); several for a list cell (``mixtrain.images.cell_refs``)."""
        from mixtrain.images import cell_refs

        return cell_refs(cell, warehouse=self.datasets.image_warehouse(), source_dirs=self.datasets.source_dirs(name))

    # -- secrets -------------------------------------------------------------------------------------
    def create_secret(self, name: str, value: str) -> None:
        self.secrets.set(name, value)

    def set_secret(self, name: str, value: str, update_existing: bool = False) -> bool:
        """Store a secret; True when it replaced an existing one (only with ``update_existing``)."""
        return self.secrets.set(name, value, update_existing=update_existing)

    def get_secret(self, name: str) -> str:
        return self.secrets.get(name)

    def list_secrets(self) -> list[SecretInfo]:
        return self.secrets.list()

    def require_secret(self, name: str) -> None:
        """NotFound unless it exists; decrypts nothing (a secret whose key was lost can still be deleted)."""
        self.secrets.require(name)

    def delete_secret(self, name: str) -> None:
        self.secrets.delete(name)

    # -- workflows -----------------------------------------------------------------------------------
    def create_workflow(self, files, name: str, description: str = "", entrypoint: str | None = None) -> Workflow:
        return self.workflows.create(name, _paths(files), description, entrypoint)

    def update_workflow(
        self, name: str, files, description: str | None = None, entrypoint: str | None = None
    ) -> Workflow:
        return self.workflows.update(name, _paths(files), description, entrypoint)

    def get_workflow(self, name: str) -> Workflow:
        return self.workflows.describe(name)

    def list_workflows(self) -> list[WorkflowSummary]:
        return self.workflows.list()

    def delete_workflow(self, name: str) -> None:
        self.workflows.delete(name)

    def workflow_spec(self, name: str) -> dict:
        """The latest version's input spec (what `workflow run NAME` parses its options against)."""
        return self.workflows.latest_version(name)["spec"]

    def start_run(
        self, name: str, inputs: dict[str, Any], *, from_text: bool = False, fork: bool = False, num_nodes: int = 1
    ) -> Run:
        """Validate the inputs and start a detached run; ``from_text``: values are text to parse (the CLI).

        With ``MIXTRAIN_RAY_ADDRESS`` set the run is a Ray job; ``num_nodes`` > 1 gangs that many nodes for its training.
        """
        from mixtrain.workflows import runner

        return runner.start(self.settings, name, inputs, from_text=from_text, fork=fork, num_nodes=num_nodes)

    def run_log(self, workflow: str, number: int) -> bytes | None:
        """The run's log as written so far (a Ray run's comes from its job); None when it has none yet."""
        from pathlib import Path

        from mixtrain.workflows import cluster

        run = self.workflows.run(workflow, number)
        if run.placement:
            try:
                return cluster.logs(run.placement)
            except cluster.JobGone:
                pass  # the cluster forgot the job: the run folder's copy, when this home has it
        path = Path(run.log_path)
        return path.read_bytes() if path.exists() else None

    def run_workflow(self, name: str, inputs: dict[str, Any] | None = None, detach: bool = False) -> Run:
        """Start a run; unless ``detach``, wait for it and return its final record."""
        from mixtrain.workflows import runner

        run = self.start_run(name, inputs or {})
        if detach:
            return run
        return runner.wait(self.settings, name, run.number)

    def follow_run(self, workflow: str, number: int, out=None, on_tick=None) -> Run:
        """Stream the run's log to ``out`` (``write(bytes)``) until it ends; returns the final record."""
        from mixtrain.workflows import runner

        return runner.follow(self.settings, workflow, number, out, on_tick=on_tick)

    def cancel_run(self, workflow: str, number: int) -> Run:
        from mixtrain.workflows import runner

        return runner.cancel(self.settings, workflow, number)

    def get_run(self, workflow: str, number: int) -> Run:
        """The run as stored; call ``reconcile_runs`` first to settle one whose processes died."""
        return self.workflows.run(workflow, number)

    def list_runs(self, name: str, limit: int | None = None, offset: int = 0, user: str | None = None) -> list[Run]:
        """Newest first, as stored; call ``reconcile_runs`` first to settle runs whose processes died.
        ``user``: only the runs that user (``MIXTRAIN_USER``) started."""
        return self.workflows.runs(name, limit, offset, user=user)

    def reconcile_runs(self, workflow: str, number: int | None = None) -> int:
        """The explicit liveness step: fail active runs (all of ``workflow``'s, or run ``number``) whose
        processes are gone (SIGKILL, OOM killer, reboot), with the reason. Returns how many it failed."""
        if number is None:
            return self.workflows.reconcile_workflow(workflow)
        run = self.workflows.run(workflow, number)
        return int(run.status.is_active and self.workflows.reconcile(run.id))

    def get_run_metrics(self, workflow: str, run: int) -> list[dict]:
        """The run's recorded training metrics: one dict per logged step, sorted by step.

        ``{"step": int, "epoch": float | None, "loss": ..., "learning_rate": ..., "eval_loss": ...}`` —
        only the keys the trainer logged at that step besides step/epoch. Empty if it never trained.
        """
        from mixtrain.workflows.metrics import MetricsStore

        info = self.workflows.run(workflow, run)
        return MetricsStore(self.settings.database_url).series(info.id)

    def resume_run(self, workflow: str, run: int, detach: bool = False, *, fork: bool = False) -> Run:
        """Start a new run that continues ``run`` from its latest complete checkpoint."""
        from mixtrain.workflows import runner

        new = runner.resume(self.settings, workflow, run, fork=fork)
        if detach:
            return new
        return runner.wait(self.settings, workflow, new.number)

    # -- models --------------------------------------------------------------------------------------
    def list_models(self, user: str | None = None) -> list[ModelVersion]:
        """The latest version of each model (``user``: the latest version that user registered)."""
        return self.models.list(user)

    def get_model_info(self, name: str, version: int | None = None) -> ModelVersion:
        return self.models.get(name, version)

    def model_versions(self, name: str) -> list[ModelVersion]:
        return self.models.versions(name)

    def delete_model(self, name: str) -> None:
        """The model, all its versions and the adapter files it owns."""
        self.models.delete(name)

    def register_base_model(
        self, name: str, base_model: str, model_type: str = "llava", log: Callable[[str], None] = print
    ) -> ModelVersion:
        """Register a base model (no adapter) to query it like a fine-tuned one.

        The family comes from the model's own config.json, as in the fine-tune (``model_type`` is
        corrected, with a note to ``log``, when they disagree); a missing folder or an unreadable config
        is refused. A local folder is stored as its absolute path.
        """
        from mixtrain.vlm.families import resolve

        family, _ = resolve(model_type, base_model, log)
        if Path(base_model).expanduser().is_dir():
            base_model = str(Path(base_model).expanduser().resolve())
        return self.models.register_base(name, base_model, family.name)

    def model_evals(self, name: str) -> list[ModelEvalScore]:
        """Every eval this model (any version) appears in, with its score there."""
        from mixtrain.records import ModelEvalScore

        self.reconcile_evals()
        out = []
        for rec in self.evals.for_model(name):
            for mod in rec.models:
                if mod["name"] == name:
                    s = rec.scores.get(mod["label"]) or {}
                    out.append(
                        ModelEvalScore(
                            eval=rec.name,
                            version=mod["version"],
                            label=mod["label"],
                            dataset=rec.dataset,
                            metric=rec.metric,
                            status=rec.status,
                            mean=s.get("mean"),
                            ci_low=s.get("ci_low"),
                            ci_high=s.get("ci_high"),
                            n=s.get("n"),
                        )
                    )
        return out

    def run_model(self, name: str, inputs: dict, config: dict | None = None, version: int | None = None) -> dict:
        """Ask the model about an image (``{"image", "prompt"}``) or several (``{"images": [...], "prompt"}``):
        ``{"generated_text", "model", "version", ...}``.

        Bad inputs, an unknown model and an unusable image fail before the model loads; the model is
        loaded once per process (``get_model``)."""
        from mixtrain.images import resolve_image
        from mixtrain.models.inference import check_inputs, generation_settings
        from mixtrain.models.quiet import quiet_native_stderr

        refs, _ = check_inputs(inputs)
        gen = generation_settings(config)
        info = self.get_model_info(name, version)
        for ref in refs:  # a bad image fails before the model loads
            resolve_image(ref, self.settings.image_cache)
        with quiet_native_stderr():
            model = get_model(name, info.version, client=self)
        return model.run(inputs, **gen)

    def run_model_file(
        self,
        name: str,
        inputs_file: str | Path,
        write: Callable[[dict], None],
        config: dict | None = None,
        version: int | None = None,
    ) -> list[dict]:
        """Answer every row of a JSONL file of inputs with one model load, batched; ``write`` gets each
        result record (``{"line", "input", "generated_text", ...}`` or ``{"line", "input", "error"}``)
        in file order. Raises InvalidInput naming the failed rows after the good ones are written."""
        from mixtrain.models import batch
        from mixtrain.models.inference import generation_settings

        gen = generation_settings(config)
        info = self.get_model_info(name, version)
        path = Path(inputs_file)
        records = batch.check_rows(batch.read_rows(path), self.settings.image_cache)

        def load():
            from mixtrain.models.quiet import quiet_native_stderr

            with quiet_native_stderr():
                return get_model(name, info.version, client=self)

        batch.run_records(load, records, gen, write)
        batch.raise_if_failed(records, path)
        return records

    def export_model(self, name: str, out_dir: str | Path, version: int | None = None) -> Path:
        """Merge the LoRA adapter into the base weights; save a model plain transformers loads."""
        from mixtrain.models.inference import export_merged
        from mixtrain.models.quiet import quiet_native_stderr

        info = self.get_model_info(name, version)
        with quiet_native_stderr():
            return export_merged(info, self.settings, Path(out_dir))

    # -- evals ---------------------------------------------------------------------------------------
    def create_eval(
        self, name: str, dataset: str | None = None, models=None, *, spec: EvalSpec | None = None, **options
    ) -> EvalRecord:
        """Score ``models`` ("name[:version]", a list or a comma-separated string) on ``dataset``.

        The options are ``EvalSpec``'s (metric, image_column, prompt_column, reference_column, config,
        limit, batch_size); ``detach=True`` returns at once, else it waits and returns the final record.
        ``fork=True`` (the CLI) forks the run's supervisor from this process.
        """
        from mixtrain.evals import create, engine
        from mixtrain.evals.spec import EvalSpec

        detach = options.pop("detach", False)
        fork = options.pop("fork", False)
        if spec is None:
            spec = EvalSpec.of(dataset=dataset, models=models, **options)
        rec = create.create(self.settings, name, spec, fork=fork)
        if detach:
            return rec
        assert rec.run is not None
        engine.wait(self.settings, rec.run["number"])
        return self.get_eval_info(name)

    def list_evals(self, user: str | None = None) -> list[EvalRecord]:
        """Every eval, oldest first (``user``: only those that user created)."""
        self.reconcile_evals()
        return [e for e in self.evals.list() if user is None or e.created_by == user]

    def get_eval_info(self, name: str) -> EvalRecord:
        """The eval now: one whose run has ended (cancelled, killed) is settled first (``reconcile_evals``)."""
        self.reconcile_evals(name)
        return self.evals.get(name)

    def reconcile_evals(self, name: str | None = None) -> None:
        """The explicit liveness step for evals: an active eval whose run ended takes the run's status."""
        self.evals.reconcile(name)

    def follow_eval(self, name: str, out=None) -> EvalRecord:
        """Stream the eval's run log to ``out`` until it ends; returns the eval's final record."""
        from mixtrain.evals import engine

        rec = self.get_eval_info(name)
        if rec.run is not None:
            engine.follow(self.settings, rec.run["number"], out)
        return self.get_eval_info(name)

    def eval_log_path(self, name: str) -> Path | None:
        """The eval's run log (None when it has no run)."""
        rec = self.get_eval_info(name)
        if rec.run is None:
            return None
        return Path(self.workflows.run(rec.run["workflow"], rec.run["number"]).log_path)

    def eval_results(self, name: str, *, disagreements: bool = False) -> list[dict]:
        """The eval's results rows by ``row_id``: row_id, image, prompt, reference and per model label
        ``<label>__output`` / ``<label>__score``. ``disagreements``: only the rows where the models
        disagree (``evals.results.disagrees``: scores, or normalised outputs for ``--metric none``)."""
        from mixtrain.evals.results import disagrees

        ev = get_eval(name, client=self)
        rows = ev.results().to_arrow().to_pylist()
        rows.sort(key=lambda r: r["row_id"])
        if disagreements:
            rows = [r for r in rows if disagrees(r, ev.info.labels, ev.info.metric)]
        return rows

    def delete_eval(self, name: str) -> None:
        from mixtrain.evals.create import delete

        delete(self.settings, name)

    def resume_eval(self, name: str, *, detach: bool = False, fork: bool = False) -> EvalRecord:
        """Continue a failed or cancelled eval: the models it finished are kept, the rest are evaluated.

        Unless ``detach``, waits for it and returns the final record.
        """
        from mixtrain.evals import create, engine

        rec = create.resume(self.settings, name, fork=fork)
        if detach:
            return rec
        assert rec.run is not None
        engine.wait(self.settings, rec.run["number"])
        return self.get_eval_info(name)

    def cancel_eval(self, name: str) -> EvalRecord:
        from mixtrain.errors import Conflict
        from mixtrain.evals import engine

        rec = self.get_eval_info(name)
        if rec.run is None or rec.status.is_terminal:
            raise Conflict(
                f"eval {name!r} is already {rec['status']}", "only a pending or running eval can be cancelled"
            )
        engine.cancel(self.settings, rec.run["number"])
        return self.get_eval_info(name)


def _paths(files) -> list[Path]:
    return [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]


class Eval:
    """An eval by name: ``.info`` (the record), ``.scores`` ({label: {mean, ci_low, ci_high, n, failed,
    generation_s}}), ``.results()`` (its PyIceberg results table; ``.results().to_pandas()``)."""

    def __init__(self, name: str, client: MixClient | None = None):
        self.client = client or MixClient()
        self.name = name
        self.info = self.client.get_eval_info(name)

    def refresh(self) -> Eval:
        self.info = self.client.get_eval_info(self.name)
        return self

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def scores(self) -> dict:
        return self.info.scores

    def results(self):
        """The results as a PyIceberg table scan (``.to_pandas()``, ``.to_arrow()``) at its one snapshot."""
        from mixtrain.errors import NotFound

        if self.info.status != "completed":
            self.refresh()
        if self.info.status != "completed" or self.info.results_dataset is None:
            raise NotFound(
                f"eval {self.name!r} has no results ({self.info.status})", f"see `mixtrain eval get {self.name}`"
            )
        return self.client.get_dataset(self.info.results_dataset).scan()

    def __repr__(self) -> str:
        return f"Eval({self.name!r}, status={str(self.status)!r}, models={self.info.labels})"


def get_eval(name: str, client: MixClient | None = None) -> Eval:
    return Eval(name, client)


_loaded: dict = {}


def get_model(name: str, version: int | None = None, client: MixClient | None = None):
    """A loaded, reusable model handle; the same (name, version) is loaded once per process."""
    from mixtrain.models.inference import LoadedModel

    client = client or MixClient()
    info = client.models.get(name, version)
    key = (str(client.settings.home), name, info["version"])
    if key not in _loaded:
        _loaded[key] = LoadedModel(info, client.settings)
    return _loaded[key]
