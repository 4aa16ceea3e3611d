"""Registered models: named, versioned LoRA adapters with their lineage.

Team mode (an ``s3://`` warehouse): registering uploads the adapter (or full weights) to
``<warehouse>/models/<name>/<random>/`` first and records that URI; a failed upload registers nothing.
Every consumer (model run, serve, eval, export) turns the recorded path into a local one with
:func:`local_adapter`, which downloads it once into ``<home>/cache/artifacts`` (content-checked).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from mixtrain import health, objectstore
from mixtrain.errors import MixtrainError, NotFound
from mixtrain.health import Finding
from mixtrain.metadata.db import get_engine, inserted_id, now
from mixtrain.metadata.schema import model_versions, models
from mixtrain.names import check_name
from mixtrain.records import ModelVersion
from mixtrain.settings import Settings

CHECKPOINTS = r"checkpoint-\d+"  # a fine-tune's resumable checkpoints stay out of the uploaded artifact


def local_adapter(path: str, settings: Settings | None = None) -> str:
    """A registered adapter path as a local folder: ``s3://`` downloaded once (content-checked)."""
    return objectstore.local_path(path, settings) if path else path


class ModelRegistry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = get_engine(settings.database_url)

    def check(self) -> list[Finding]:
        """Every registered adapter folder is still there (a lost one makes the model unusable)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(models.c.name, model_versions.c.version, model_versions.c.adapter_path).join(
                    models, models.c.id == model_versions.c.model_id
                )
            ).all()
        missing = [f"{r.name} v{r.version}" for r in rows if r.adapter_path and not self._present(r.adapter_path)]
        if missing:
            return [
                health.problem(
                    f"{len(missing)} model version(s) lost their adapter folder: {', '.join(missing[:5])}",
                    "restore the folders from a backup, or `mixtrain model delete NAME -y`",
                )
            ]
        return [health.ok(f"{len(rows)} model version(s): adapter folders present")]

    def _present(self, stored: str) -> bool:
        if objectstore.is_remote(stored):
            return objectstore.exists(objectstore.join(stored, objectstore.MANIFEST), self.settings)
        return Path(self.settings.home_path(stored)).is_dir()

    def _upload(self, name: str, adapter_path: str) -> str:
        """The adapter folder in the team warehouse (uploaded whole before anything is recorded)."""
        if not adapter_path or objectstore.is_remote(adapter_path) or not self.settings.remote_warehouse:
            return adapter_path
        uri = objectstore.join(self.settings.warehouse, "models", name, uuid.uuid4().hex[:12])
        try:
            return objectstore.put_dir(adapter_path, uri, self.settings, skip_dirs=CHECKPOINTS)
        except BaseException:
            with contextlib.suppress(MixtrainError, OSError):
                objectstore.delete_prefix(uri + "/", self.settings)
            raise

    def _version(self, row, name: str | None = None) -> ModelVersion:
        """A version record with its adapter folder found from this home (stored relative to it)."""
        d = dict(row._mapping)
        d["adapter_path"] = self.settings.home_path(d["adapter_path"])
        return ModelVersion.from_row(d, name)

    def register(
        self, name: str, *, base_model: str, model_type: str, adapter_path: str, train_loss: float | None, lineage: dict
    ) -> ModelVersion:
        """Add a version (1 for a new name); concurrent registrations get distinct versions."""
        check_name(name, "model")
        adapter_path = self._upload(name, adapter_path)
        for _ in range(20):
            try:
                with self.engine.begin() as conn:
                    model_id = conn.execute(select(models.c.id).where(models.c.name == name)).scalar()
                    if model_id is None:
                        model_id = inserted_id(conn.execute(insert(models).values(name=name, created_at=now())))
                    version = (
                        conn.execute(
                            select(func.max(model_versions.c.version)).where(model_versions.c.model_id == model_id)
                        ).scalar()
                        or 0
                    ) + 1
                    conn.execute(
                        insert(model_versions).values(
                            model_id=model_id,
                            version=version,
                            base_model=base_model,
                            model_type=model_type,
                            adapter_path=self.settings.store_path(adapter_path) if adapter_path else "",
                            train_loss=train_loss,
                            lineage=lineage,
                            created_at=now(),
                            created_by=self.settings.user,
                        )
                    )
                return self.get(name, version)
            except IntegrityError:
                continue
        raise MixtrainError(
            f"could not allocate a version of model {name!r} (too many concurrent registrations)", "try again"
        )

    def register_base(self, name: str, base_model: str, model_type: str) -> ModelVersion:
        """Register a base model without an adapter, to query it like any other (e.g. before fine-tuning)."""
        return self.register(
            name,
            base_model=base_model,
            model_type=model_type,
            adapter_path="",
            train_loss=None,
            lineage={"base_only": True},
        )

    def _model_id(self, name: str) -> int:
        with self.engine.connect() as conn:
            model_id = conn.execute(select(models.c.id).where(models.c.name == name)).scalar()
        if model_id is None:
            raise NotFound(f"model {name!r} not found", "see `mixtrain model list`")
        return model_id

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        model_id = self._model_id(name)
        q = select(model_versions).where(model_versions.c.model_id == model_id)
        q = (
            q.where(model_versions.c.version == version)
            if version is not None
            else q.order_by(model_versions.c.version.desc()).limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise NotFound(f"model {name!r} has no version {version}", f"see `mixtrain model versions {name}`")
        return self._version(row, name)

    def versions(self, name: str) -> list[ModelVersion]:
        model_id = self._model_id(name)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(model_versions).where(model_versions.c.model_id == model_id).order_by(model_versions.c.version)
            )
            return [self._version(r, name) for r in rows]

    def list(self, user: str | None = None) -> list[ModelVersion]:
        """The latest version of each model; with ``user``, the latest version that user registered
        (models they never registered a version of are left out)."""
        with self.engine.connect() as conn:
            latest_q = select(model_versions.c.model_id, func.max(model_versions.c.version).label("version"))
            if user is not None:
                latest_q = latest_q.where(model_versions.c.created_by == user)
            latest = latest_q.group_by(model_versions.c.model_id).subquery()
            rows = conn.execute(
                select(models.c.name, model_versions)
                .join(latest, latest.c.model_id == models.c.id)
                .join(
                    model_versions,
                    (model_versions.c.model_id == models.c.id) & (model_versions.c.version == latest.c.version),
                )
                .order_by(models.c.name)
            )
            return [self._version(r) for r in rows]

    def delete(self, name: str) -> None:
        model_id = self._model_id(name)
        paths = [v["adapter_path"] for v in self.versions(name)]
        with self.engine.begin() as conn:
            conn.execute(delete(model_versions).where(model_versions.c.model_id == model_id))
            conn.execute(delete(models).where(models.c.id == model_id))
        workspace = (self.settings.workspace / "output").resolve()
        ours = objectstore.join(self.settings.warehouse, "models", name) + "/"
        for p in paths:  # only delete adapters we own (under the workspace, or uploaded by register)
            if objectstore.is_remote(p):
                if p.startswith(ours):
                    with contextlib.suppress(MixtrainError, OSError):
                        objectstore.delete_prefix(p.rstrip("/") + "/", self.settings)
            elif Path(p).resolve().is_relative_to(workspace):
                shutil.rmtree(p, ignore_errors=True)
