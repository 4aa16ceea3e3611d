"""Models in memory: each base model loaded once, its adapters attached by name (PEFT), one processor per served name.

Why PEFT named adapters on one base rather than one model per adapter: a VLM base is most of the
memory; N adapters are a few MB each. The request's served name picks the adapter
(``set_adapter``); a registered base model on the same weights is served with adapters disabled.
Switching adapters mutates the model, so only the batcher's single worker per base may call
``activate`` and generate (see batcher.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixtrain.errors import InvalidInput
from mixtrain.models.weights import is_full_weights


@dataclass
class Served:
    """One name clients can put in ``model``: a registered model version (adapter or base)."""

    name: str
    version: int
    base_model: str
    adapter_path: str | None  # None: the base model itself
    model_type: str = ""
    adapter_id: str | None = None  # PEFT adapter name inside the shared base
    rank: int | None = None
    processor: Any = None
    base: Base | None = None


@dataclass
class Base:
    """One base model in memory and the served names on it."""

    path: str
    served: list[Served] = field(default_factory=list)
    model: Any = None
    device: str = "cpu"
    dtype: Any = None

    def activate(self, served: Served):
        """Context in which ``self.model`` behaves as ``served`` (its adapter on, or all adapters off)."""
        if served.adapter_id is not None:
            self.model.set_adapter(served.adapter_id)
            return contextlib.nullcontext()
        if hasattr(self.model, "disable_adapter"):
            return self.model.disable_adapter()
        return contextlib.nullcontext()


def adapter_rank(adapter_dir: str) -> int:
    """LoRA rank from adapter_config.json (``r``, or the largest of ``rank_pattern``) — vLLM needs it up front."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InvalidInput(
            f"cannot read the adapter config {path}: {err}", "re-run the fine-tune or re-register the model"
        ) from err
    ranks = [int(cfg.get("r") or 0), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())]
    return max(ranks)


def plan(infos: Sequence[Mapping]) -> list[Base]:
    """Group registry entries by base model (no loading): the layout both engines serve."""
    bases: dict[str, Base] = {}
    names: set[str] = set()
    for info in infos:
        if info["name"] in names:
            raise InvalidInput(f"model {info['name']!r} is given twice", "serve each model once (one version per name)")
        names.add(info["name"])
        adapter = info["adapter_path"] or None
        if adapter is not None and adapter.startswith("s3://"):  # team mode: downloaded once (content-checked)
            from mixtrain.models.registry import local_adapter

            adapter = local_adapter(adapter)
        base_path = info["base_model"]
        if is_full_weights(adapter):  # --adapter full: its folder is a model of its own, served as a base
            base_path, adapter = str(adapter), None
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise InvalidInput(
                f"adapter files of {info['name']} v{info['version']} are missing at {adapter}", "re-run the fine-tune"
            )
        base = bases.setdefault(_base_key(base_path), Base(path=base_path))
        s = Served(info["name"], info["version"], info["base_model"], adapter, info.get("model_type", ""), base=base)
        if adapter is not None:
            s.adapter_id = f"a{sum(x.adapter_id is not None for x in base.served)}"
            s.rank = adapter_rank(adapter)
        base.served.append(s)
    return list(bases.values())


def _base_key(base_model: str) -> str:
    p = Path(base_model).expanduser()
    return str(p.resolve()) if p.exists() else base_model


def load(bases: list[Base], cache_dir: Path | None = None) -> None:
    """Load each base once, attach its adapters, and load a processor per served name.

    Device, dtype and processor choice match ``LoadedModel`` so a served model answers exactly like
    ``mixtrain model run`` (tested). In the server's own process (``enable``d) the stack imports lean when
    one lean import suits every base (models/_fastimport.py), as ``model run`` does for its one model.
    """
    from contextlib import nullcontext

    from mixtrain.models import _fastimport

    paths = [b.path for b in bases]
    with _fastimport.lean_imports(paths[0], paths[0], cache_dir) if _fastimport.one_stack(paths) else nullcontext():
        _fastimport.import_inference_stack(with_peft=any(s.adapter_id for b in bases for s in b.served))
        _load(bases)


def _load(bases: list[Base]) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if torch.cuda.is_available():
        device, dtype = "cuda", (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    else:
        device, dtype = "cpu", torch.float32
    for base in bases:
        model = AutoModelForImageTextToText.from_pretrained(base.path, dtype=dtype)
        for s in base.served:
            if s.adapter_id is None:
                continue
            from peft import PeftModel

            if not isinstance(model, PeftModel):
                model = PeftModel.from_pretrained(model, s.adapter_path, adapter_name=s.adapter_id)
            else:
                model.load_adapter(s.adapter_path, adapter_name=s.adapter_id)
        base.model, base.device, base.dtype = model.to(device).eval(), device, dtype
        for s in base.served:
            src = s.adapter_path if s.adapter_path and _has_processor(Path(s.adapter_path)) else base.path
            s.processor = AutoProcessor.from_pretrained(str(src), use_fast=device == "cuda")


def _has_processor(d: Path) -> bool:
    return (d / "processor_config.json").is_file() or (d / "preprocessor_config.json").is_file()
