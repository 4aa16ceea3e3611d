"""What a registered version's folder holds: a LoRA adapter (applied to its base) or a whole model.

A fine-tune with ``--adapter full`` registers the model's own weights; every consumer (``model run``, serve,
eval, export) loads that folder as the model and applies no adapter. Told apart by the files, so versions
registered before training modes existed need no migration.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# Module-name parts of vision towers and projectors/mergers across the families (vlm/families.py).
VISION_PARTS = ("vision_tower", "visual", "vision_model", "multi_modal_projector", "connector", "merger")


def is_full_weights(folder: str | Path | None) -> bool:
    """The folder is a whole transformers model (``--adapter full``), not a PEFT adapter."""
    if not folder:
        return False
    d = Path(folder)
    return not (d / "adapter_config.json").is_file() and (d / "config.json").is_file()


def adapter_tensor_names(adapter_dir: str | Path) -> list[str]:
    """The tensor names in an adapter's safetensors file, read from its header (no torch, no weights read)."""
    path = Path(adapter_dir) / "adapter_model.safetensors"
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return []
    return [k for k in header if k != "__metadata__"]


def adapter_touches_vision(adapter_dir: str | Path) -> bool:
    """The adapter has weights in the vision tower or the projector (LoRA there, or modules trained in full)."""
    return any(set(name.split(".")) & set(VISION_PARTS) for name in adapter_tensor_names(adapter_dir))
