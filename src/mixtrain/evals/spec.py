"""The one strict schema of an eval's options — `eval create`'s flags, ``MixClient.create_eval``'s
keywords and ``evals.create``'s input all come from these fields (help text included).

Checks that need only the values live here; checks against the stores (the dataset's columns, the
models' versions, a name already taken) are made by ``evals.create.plan`` before anything is written.
The checks raise ``InvalidInput`` with the flag's name, as the CLI has always reported them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mixtrain.errors import InvalidInput
from mixtrain.evals.metrics import check_metric


class EvalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(description="Dataset to evaluate on (its current snapshot is pinned).")
    models: list[str] = Field(
        description="MODEL[:VERSION][,MODEL...] — compared side by side; the first two get a paired test."
    )
    metric: str = Field(
        "exact_match",
        description="exact_match | contains | anls | vqa | none (outputs only). A list reference (several answers) scores the best match; vqa: min(#matching answers / 3, 1).",
    )
    image_column: str = Field("image_path", description="Column with image paths or URLs.")
    prompt_column: str = Field("prompt", description="Column with the prompt.")
    reference_column: str | None = Field(None, description="Column with the expected answer (default: response).")
    config: dict[str, Any] | None = Field(
        None,
        description='Generation settings JSON, e.g. {"max_new_tokens": 32, "temperature": 0}. Greedy by default.',
        json_schema_extra={"short": "-c", "json": True},
    )
    limit: int | None = Field(None, description="Evaluate only the first N rows.")
    batch_size: int = Field(8, description="Rows generated together per model.")

    @classmethod
    def of(cls, **values) -> EvalSpec:
        """Build from keywords; an unknown keyword is a one-line error naming it."""
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "options"
            if err["type"] == "extra_forbidden":
                raise InvalidInput(
                    f"unknown eval option {where!r}", f"the options are: {', '.join(cls.model_fields)}"
                ) from None
            raise InvalidInput(f"--{where}: {err['msg']}", "see `mixtrain eval create --help`") from None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v):
        from mixtrain.evals.create import parse_models

        return [f"{name}:{version}" if version else name for name, version in parse_models(v)]

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, v):
        check_metric(v)
        return v

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, v):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InvalidInput(f"--limit must be a whole number ≥ 1, got {v!r}", "omit it to evaluate every row")
        return v

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidInput(f"--batch_size must be a whole number ≥ 1, got {v!r}", "e.g. --batch_size 8")
        return v

    @field_validator("config", mode="before")
    @classmethod
    def _config(cls, v):
        if v is not None and not isinstance(v, dict):
            raise InvalidInput(
                "--config must be a JSON object", 'e.g. --config \'{"max_new_tokens": 32, "temperature": 0}\''
            )
        from mixtrain.models.inference import generation_settings

        generation_settings(v)  # a bad generation setting fails here, before anything is recorded
        return v
