"""What the training machine can do; precision and attention settings follow it, not the user's hope."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    n_gpu: int
    bf16: bool
    tf32: bool
    flash_attn: bool
    gpu_name: str = ""

    @classmethod
    def cpu(cls) -> "Hardware":
        return cls(cuda=False, n_gpu=0, bf16=False, tf32=False, flash_attn=False)


def _no_nvidia_driver() -> bool:
    """No NVIDIA driver loaded: no CUDA, known without paying ~1.5 s for `import torch`."""
    import shutil
    from pathlib import Path

    return not Path("/proc/driver/nvidia").exists() and shutil.which("nvidia-smi") is None


def detect() -> Hardware:
    if _no_nvidia_driver():
        return Hardware.cpu()
    import torch

    if not torch.cuda.is_available():
        return Hardware.cpu()
    major, _ = torch.cuda.get_device_capability(0)
    return Hardware(
        cuda=True,
        n_gpu=torch.cuda.device_count(),
        bf16=torch.cuda.is_bf16_supported(),
        tf32=major >= 8,
        flash_attn=importlib.util.find_spec("flash_attn") is not None,
        gpu_name=torch.cuda.get_device_name(0),
    )
