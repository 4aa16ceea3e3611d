"""MixClient: the Python SDK facade. The CLI is a thin layer over the same methods."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from mixtrain.settings import Settings, load_settings


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

    # -- datasets ------------------------------------------------------------------------------------
    def create_dataset(self, name: str, file: str | Path, description: str = ""):
        return self.datasets.create(name, file, description)

    def query(self, sql: str, *, snapshot_id: int | None = None, dataset: str | None = None):
        """SQL (DuckDB) over the datasets the query names, at their current snapshots (or ``snapshot_id``
        for ``dataset``): a ``pyarrow.Table``. Example: ``MixClient().query("SELECT * FROM d WHERE x > 1")``."""
        from mixtrain.datasets.query import run_query

        return run_query(self.datasets, sql, name=dataset, snapshot_id=snapshot_id)

    def get_dataset(self, name: str):
        """The dataset's PyIceberg table: ``.scan(snapshot_id=...).to_pandas()`` / ``.to_arrow()``."""
        return self.datasets.get(name)

    def list_datasets(self) -> list[str]:
        return self.datasets.names()

    # -- secrets -------------------------------------------------------------------------------------
    def create_secret(self, name: str, value: str) -> None:
        self.secrets.set(name, value)

    def get_secret(self, name: str) -> str:
        return self.secrets.get(name)

    # -- workflows -----------------------------------------------------------------------------------
    def create_workflow(self, files, name: str, description: str = "", entrypoint: str | None = None) -> dict:
        return self.workflows.create(
            name, [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)], description, entrypoint
        )

    def get_workflow(self, name: str) -> dict:
        return self.workflows.describe(name)

    def list_workflows(self) -> list[dict]:
        return self.workflows.list()

    def run_workflow(self, name: str, inputs: dict[str, Any] | None = None, detach: bool = False) -> dict:
        """Start a run; unless ``detach``, wait for it and return its final record."""
        from mixtrain.workflows import runner

        run = runner.start(self.settings, name, inputs or {})
        if detach:
            return run
        return runner.wait(self.settings, name, run["number"])

    def list_runs(self, name: str, limit: int | None = None, offset: int = 0) -> list[dict]:
        return self.workflows.runs(name, limit, offset)

    def get_run_metrics(self, workflow: str, run: int) -> list[dict]:
        """The run's recorded training metrics: one dict per logged step, sorted by step.

        ``{"step": int, "epoch": float | None, "loss": ..., "learning_rate": ..., "eval_loss": ...}`` —
        only the keys the trainer logged at that step besides step/epoch. Empty if it never trained.
        """
        from mixtrain.workflows.metrics import MetricsStore

        info = self.workflows.run(workflow, run)
        return MetricsStore(self.settings.database_url).series(info["id"])

    def resume_run(self, workflow: str, run: int, detach: bool = False) -> dict:
        """Start a new run that continues ``run`` from its latest complete checkpoint."""
        from mixtrain.workflows import runner

        new = runner.resume(self.settings, workflow, run)
        if detach:
            return new
        return runner.wait(self.settings, workflow, new["number"])

    # -- models --------------------------------------------------------------------------------------
    def list_models(self) -> list[dict]:
        return self.models.list()

    def get_model_info(self, name: str, version: int | None = None) -> dict:
        return self.models.get(name, version)

    def run_model(self, name: str, inputs: dict, config: dict | None = None, version: int | None = None) -> dict:
        return get_model(name, version, client=self).run(inputs, **(config or {}))

    # -- evals ---------------------------------------------------------------------------------------
    @cached_property
    def evals(self):
        from mixtrain.evals.store import EvalStore

        return EvalStore(self.settings)

    def create_eval(
        self,
        name: str,
        dataset: str,
        models,
        metric: str = "exact_match",
        image_column: str = "image_path",
        prompt_column: str = "prompt",
        reference_column: str | None = None,
        config: dict | None = None,
        limit: int | None = None,
        batch_size: int = 8,
        detach: bool = False,
    ) -> dict:
        """Score ``models`` ("name[:version]", a list or a comma-separated string) on ``dataset``.

        Runs as a tracked background run; unless ``detach``, waits for it and returns the final record.
        """
        from mixtrain.evals import create, engine

        rec = create.create(
            self.settings,
            name,
            dataset,
            models,
            metric=metric,
            image_column=image_column,
            prompt_column=prompt_column,
            reference_column=reference_column,
            config=config,
            limit=limit,
            batch_size=batch_size,
        )
        if detach:
            return rec
        engine.wait(self.settings, rec["run"]["number"])
        return self.evals.get(name)

    def list_evals(self) -> list[dict]:
        return self.evals.list()

    def get_eval_info(self, name: str) -> dict:
        return self.evals.get(name)

    def delete_eval(self, name: str) -> None:
        from mixtrain.evals.create import delete

        delete(self.settings, name)

    def cancel_eval(self, name: str) -> dict:
        from mixtrain.errors import Conflict
        from mixtrain.evals import engine

        rec = self.evals.get(name)
        if rec["run"] is None or rec["status"] not in ("pending", "running"):
            raise Conflict(
                f"eval {name!r} is already {rec['status']}", "only a pending or running eval can be cancelled"
            )
        engine.cancel(self.settings, rec["run"]["number"])
        return self.evals.get(name)


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
        return self.info["status"]

    @property
    def scores(self) -> dict:
        return self.info["scores"]

    def results(self):
        """The results as a PyIceberg table scan (``.to_pandas()``, ``.to_arrow()``) at its one snapshot."""
        from mixtrain.errors import NotFound

        if self.info["status"] != "completed":
            self.refresh()
        if self.info["status"] != "completed":
            raise NotFound(
                f"eval {self.name!r} has no results ({self.info['status']})", f"see `mixtrain eval get {self.name}`"
            )
        return self.client.get_dataset(self.info["results_dataset"]).scan()

    def __repr__(self) -> str:
        return f"Eval({self.name!r}, status={self.status!r}, models={[m['label'] for m in self.info['models']]})"


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
