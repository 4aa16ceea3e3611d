"""`--engine vllm`: serve the same names through a `vllm serve` child process (GPU machines).

vLLM already speaks the OpenAI API and serves many LoRA adapters on one base (its LoRA kernels batch
requests for different adapters together), so on a GPU we hand the whole job to it rather than
proxying: `vllm serve BASE --enable-lora --lora-modules name=dir ... --max-lora-rank R`. The API key
reaches the child through its environment (VLLM_API_KEY), never its argument list, so `ps` never
shows it. vLLM serves one base per process: several bases need several servers.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.models.weights import adapter_touches_vision
from mixtrain.serving.pool import Base

# --max-lora-rank accepts only these values; the adapters' largest rank is rounded up to one of them.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_available() -> bool:
    """vLLM importable and a CUDA GPU present (what `--engine auto` needs to pick vLLM)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def vllm_command(
    bases: list[Base],
    host: str,
    port: int,
    *,
    max_batch_size: int,
    allow_local_files: bool = False,
    vllm_bin: str = "vllm",
) -> list[str]:
    """The `vllm serve` argument list for one base and its adapters (golden-tested)."""
    if len(bases) != 1:
        raise InvalidInput(
            f"--engine vllm serves one base model per server; these models use {len(bases)} bases",
            "start one `mixtrain model serve` per base model, or use --engine transformers",
        )
    base = bases[0]
    plain = [s for s in base.served if s.adapter_path is None]
    adapters = [s for s in base.served if s.adapter_path is not None]
    cmd = [vllm_bin, "serve", base.path, "--host", host, "--port", str(port)]
    if plain:  # the base is served under its registered name
        cmd += ["--served-model-name", plain[0].name]
    cmd += ["--max-num-seqs", str(max_batch_size)]
    if adapters:
        rank = max(s.rank or 0 for s in adapters)
        fit = next((r for r in VLLM_LORA_RANKS if r >= rank), None)
        if fit is None:
            raise InvalidInput(
                f"LoRA rank {rank} is over vLLM's largest supported rank {VLLM_LORA_RANKS[-1]}",
                "use --engine transformers",
            )
        cmd += [
            "--enable-lora",
            "--lora-modules",
            *(f"{s.name}={s.adapter_path}" for s in adapters),
            "--max-lora-rank",
            str(fit),
            "--max-loras",
            str(len(adapters)),
        ]
        if any(adapter_touches_vision(s.adapter_path or "") for s in adapters):
            # vLLM applies LoRA (and trained modules) to the language model only unless told otherwise:
            # an adapter trained with --train_vision would be served without its vision part.
            cmd.append("--enable-tower-connector-lora")
        template = Path(adapters[0].adapter_path or "") / "chat_template.jinja"
        if template.is_file():  # the template the adapters were trained with
            cmd += ["--chat-template", str(template)]
    if allow_local_files:
        cmd += ["--allowed-local-media-path", "/"]
    return cmd


def run_vllm(cmd: list[str], api_key: str | None) -> int:
    """Run the child until it exits; Ctrl-C / SIGTERM are passed on so it shuts down gracefully."""
    exe = shutil.which(cmd[0]) or str(Path(sys.executable).parent / cmd[0])
    env = dict(os.environ)
    env.pop("VLLM_API_KEY", None)
    if api_key is not None:
        env["VLLM_API_KEY"] = api_key
    child = subprocess.Popen([exe, *cmd[1:]], env=env)

    def forward(signum, _frame):
        child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
