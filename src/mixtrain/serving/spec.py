"""The one schema of `mixtrain model serve`'s options — CLI flags, checks and the server's limits come from it.

Before, the 13 options went through four signatures and eight positional arguments, and were checked
in two files (some after the models had loaded). Now the CLI builds its flags from these fields
(``cli/spec_options.py``), validates them here in one go — ports, bounds, engine, exposure — before
anything is loaded, and the server reads one ``ServeSpec``. Light on purpose: the CLI process
imports it, so no FastAPI or torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mixtrain.errors import InvalidInput
from mixtrain.netaddr import is_loopback


@dataclass
class Limits:
    """Per-request caps; each refusal names the limit and how to stay under it."""

    max_body_bytes: int = 20 * 2**20
    max_image_bytes: int = 10 * 2**20
    max_image_pixels: int = 25_000_000
    max_images: int = 8
    max_tokens: int = 4096
    default_max_tokens: int = 128  # like `mixtrain model run`
    download_timeout_s: float = 10.0
    max_redirects: int = 5


class ServeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    models: list[str] = Field(
        min_length=1,
        description="Models to serve: NAME or NAME:VERSION (default: latest). Adapters of one base share it in memory.",
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on. Anything but loopback needs --api-key-secret (or --insecure).",
    )
    port: int = Field(8000, ge=0, le=65535, description="Port (0 = any free port; the URL is printed).")
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="auto (vLLM when installed with a CUDA GPU, else transformers), transformers or vllm."
    )
    max_batch_size: int = Field(8, ge=1, le=4096, description="Most requests batched into one generate call.")
    max_wait_ms: float = Field(
        10.0, ge=0, le=60_000, description="How long a request may wait for others to batch with."
    )
    api_key_secret: str | None = Field(
        None,
        description="Name of a mixtrain secret holding the API key clients must send as 'Authorization: Bearer KEY'.",
    )
    insecure: bool = Field(False, description="Allow a non-loopback --host without an API key.")
    allow_local_files: bool = Field(
        False, description="Accept local file paths as image URLs (off: only data: and http(s) URLs)."
    )
    allow_private_urls: bool = Field(
        False,
        description="Fetch image URLs that resolve to private, loopback or link-local addresses "
        "(off: only public addresses, checked on every redirect).",
    )
    max_tokens: int = Field(4096, ge=1, le=1_048_576, description="Largest max_tokens a request may ask for.")
    max_images: int = Field(8, ge=1, le=1024, description="Most images in one request.")
    max_image_mb: float = Field(10.0, gt=0, le=1024, description="Largest image (encoded bytes, MiB).")
    max_image_pixels: int = Field(25_000_000, ge=1, le=1_000_000_000, description="Largest image (width x height).")
    max_body_mb: float = Field(20.0, gt=0, le=4096, description="Largest request body (MiB).")

    @field_validator("models")
    @classmethod
    def _refs(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            parse_model_ref(ref)
        return refs

    @model_validator(mode="after")
    def _exposure(self) -> ServeSpec:
        if not is_loopback(self.host) and self.api_key_secret is None and not self.insecure:
            raise ValueError(
                f"refusing to serve on {self.host} without an API key: pass --api-key-secret NAME "
                "(see `mixtrain secret create`), or --insecure to serve openly"
            )
        return self

    def limits(self) -> Limits:
        return Limits(
            max_body_bytes=int(self.max_body_mb * 2**20),
            max_image_bytes=max(1, int(self.max_image_mb * 2**20)),
            max_image_pixels=self.max_image_pixels,
            max_images=self.max_images,
            max_tokens=self.max_tokens,
        )


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    name, sep, version = ref.partition(":")
    if not sep:
        return name, None
    if not version.isdigit():
        raise ValueError(f"bad model reference {ref!r}: use NAME or NAME:VERSION, e.g. my-model:2")
    return name, int(version)


def parse_spec(values: dict) -> ServeSpec:
    """Validate the options; every problem in one line, each naming its flag (``--max-tokens: ...``)."""
    try:
        return ServeSpec.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown option"
            problems.append(f"{flag}: {msg}" if flag and flag != "--models" else msg)
        raise InvalidInput("; ".join(problems), "fix the options listed (see `mixtrain model serve --help`)") from None
