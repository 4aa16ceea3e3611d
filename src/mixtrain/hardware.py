"""What this machine's accelerator can do — the one GPU probe.

Training precision and attention follow it (``vlm.configure``), inference picks its device and dtype
from it (``models.inference``), and the run supervisor warns from ``nvidia_driver_present()`` when a
workflow asks for a GPU this machine lacks. Lives below both so neither imports the other.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

#: Every variable by which torchrun, accelerate or a scheduler describe a distributed job. Stripped
#: from a training child's environment (``vlm.launch``), from test and benchmark environments.
DIST_VARS = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "NUM_NODES",
    "GROUP_RANK",
    "ROLE_RANK",
)


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    n_gpu: int
    bf16: bool
    tf32: bool
    flash_attn: bool
    gpu_name: str = ""

    @classmethod
    def cpu(cls) -> Hardware:
        return cls(cuda=False, n_gpu=0, bf16=False, tf32=False, flash_attn=False)


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded: without one there is no CUDA, known without paying ~1.5 s for `import torch`."""
    import shutil
    from pathlib import Path

    return (
        Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None
    )


def detect() -> Hardware:
    if not nvidia_driver_present():
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
