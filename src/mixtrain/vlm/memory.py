"""Step 2½ — will it fit? A per-GPU memory estimate for a LoRA fine-tune, before any GPU time is spent.

Parameters are counted exactly by building the model from its ``config.json`` on PyTorch's meta
device (shapes, no weights, no memory). The rest is arithmetic, part by part, so a user sees what
to change:
  weights       every parameter at the training dtype (bf16/fp16 on GPU: 2 bytes; fp32 on CPU: 4),
                divided over the processes under ZeRO-3; QLoRA (--adapter qlora): the quantized Linear
                weights at NF4 with double quantization (4.127 bits = 0.516 bytes each), the rest as before;
  lora          LoRA A/B matrices in fp32 (PEFT keeps adapters in fp32) + their grads + AdamW's two
                moments = 16 bytes per LoRA parameter; grads and moments sharded by ZeRO-2/3;
  full-trained  what trains in full (--adapter full: the language model; --train_vision projector/full: the
                projector, the tower): its gradient at the training dtype + AdamW's two fp32 moments
                (dtype + 8 bytes per parameter), sharded by ZeRO-2/3; under LoRA PEFT also keeps a trainable
                copy of such modules (modules_to_save): + dtype bytes per parameter;
  activations   per micro-batch of the longest measured sequence: with gradient checkpointing, each
                decoder layer's input (L·h) is kept plus one layer recomputed at a time (~34·L·h bytes
                and the MLP's intermediate, Korthikanti et al. 2022, without the attention-score term
                since SDPA/FlashAttention never materialise it); without checkpointing, every layer's;
  logits        the LM head's output upcast to fp32 for the loss, and its gradient (2 · L · vocab · 4);
  overhead      CUDA context and allocator fragmentation (~1 GiB; 0 on CPU).
Measured against published figures in tests/e2e/test_memory_estimate.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GiB = 1024**3
NF4_BYTES = 4.127 / 8  # bitsandbytes NF4 with double quantization: 4 bits + 0.127 bits of scales per weight


@dataclass(frozen=True)
class Architecture:
    params: int  # every parameter of the model
    lora_params: int  # LoRA parameters at the rank it was counted for
    lora_rank: int
    layers: int  # language-model decoder layers
    hidden: int
    intermediate: int
    vocab: int
    full_params: int = 0  # parameters trained in full (what --adapter full / --train_vision unfreeze)
    quantized_params: int = 0  # Linear weights QLoRA stores in 4-bit (outside the unquantized modules)


@dataclass
class Estimate:
    parts: dict[str, float]  # GiB per part
    total: float

    def lines(self) -> list[str]:
        return [f"{k} {_gib(v)}" for k, v in self.parts.items()]


def _gib(v: float) -> str:
    """GiB with enough digits to be read (a tiny test model needs three)."""
    return f"{v:.1f}" if v >= 1 else f"{v:.3f}"


def _text_config(config):
    return getattr(config, "text_config", None) or config


def architecture(
    config, lora_target: str, lora_rank: int, *, full_trained: tuple[str, ...] = (), unquantized: tuple[str, ...] = ()
) -> Architecture:
    """Count parameters exactly from a transformers config (no weights are read or allocated).

    ``full_trained``: module paths trained in full; ``unquantized``: module paths QLoRA keeps at full precision.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    pattern = re.compile(lora_target)
    lora = sum(
        lora_rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and pattern.fullmatch(name)
    )

    def under(name: str, prefixes) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    full = sum(p.numel() for n, p in model.named_parameters() if under(n, full_trained))
    quantized = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not under(name, unquantized)
    )
    text = _text_config(config)
    return Architecture(
        params=sum(p.numel() for p in model.parameters()),
        lora_params=lora,
        lora_rank=lora_rank,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        vocab=text.vocab_size,
        full_params=full,
        quantized_params=quantized,
    )


def estimate(
    arch: Architecture,
    *,
    lora_rank: int,
    micro_batch: int,
    seq_len: int,
    dtype_bytes: int = 2,
    gradient_checkpointing: bool = True,
    zero_stage: int = 0,
    processes: int = 1,
    cuda: bool = True,
    adapter: str = "lora",
) -> Estimate:
    n = max(1, processes)
    lora = 0.0 if adapter == "full" else arch.lora_params * lora_rank / arch.lora_rank
    stored: float = arch.params * dtype_bytes
    if adapter == "qlora":  # NF4 + double-quantized scales: 4.127 bits per quantized weight
        stored -= arch.quantized_params * (dtype_bytes - NF4_BYTES)
    weights = stored / (n if zero_stage == 3 else 1)
    lora_bytes = lora * 4 + lora * 12 / (n if zero_stage >= 2 else 1)  # fp32 weights; grads + 2 Adam moments sharded
    full = arch.full_params
    full_bytes = full * (dtype_bytes + 8) / (n if zero_stage >= 2 else 1)  # grads + 2 fp32 Adam moments, sharded
    if adapter != "full":
        full_bytes += full * dtype_bytes  # PEFT's modules_to_save: a trainable copy beside the frozen original
    tokens = micro_batch * seq_len
    per_layer = (
        tokens * (34 * arch.hidden + 4 * arch.intermediate) * dtype_bytes / 2
    )  # one layer's saved tensors (Korthikanti, no L² term)
    if gradient_checkpointing:
        acts = arch.layers * tokens * arch.hidden * dtype_bytes + per_layer
    else:
        acts = arch.layers * per_layer
    logits = 2 * tokens * arch.vocab * 4
    parts = {"weights": weights}
    if adapter != "full":
        parts["lora+optimizer"] = lora_bytes
    if full:
        parts["full-trained+optimizer"] = full_bytes
    parts.update({"activations": acts, "logits": logits, "overhead": GiB if cuda else 0})
    parts = {k: v / GiB for k, v in parts.items()}
    return Estimate(parts, sum(parts.values()))


def verdict(est: Estimate, available_gib: float | None) -> tuple[str, bool]:
    """A word for the dry run, and whether the run should be refused (clearly over: >110% of the GPU)."""
    if not available_gib:
        return "no GPU detected: estimate only", False
    if est.total > available_gib * 1.10:
        return f"does NOT fit ({est.total:.1f} GiB > {available_gib:.0f} GiB)", True
    if est.total > available_gib * 0.90:
        return "tight: may run out of memory", False
    return "fits", False


REMEDIES = "lower --batch_size, lower --max_pixels (Qwen2-VL) or --max_seq_length, or use --deepspeed_config zero3 over more GPUs"


def remedies(adapter: str = "lora") -> str:
    """What to change when the estimate does not fit, for this training mode."""
    mode = {
        "full": "--adapter lora or qlora (full fine-tuning keeps gradients and AdamW state for every weight)",
        "lora": "--adapter qlora (a 4-bit base)",
        "qlora": "",
    }.get(adapter, "")
    return REMEDIES + (f", or {mode}" if mode else "")


class PeakMeter:
    """What training really took, to set beside the estimate: on a GPU the allocator's peak reserved bytes,
    on CPU the growth of this process's peak resident set from just before the model loads.

    The kernel's peak (VmHWM) is reset at the start (``/proc/self/clear_refs`` 5), so a transient peak
    before the model loads (imports, the preflight) is not counted.
    """

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = 0
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass  # not Linux, or not allowed: the peak then includes what came before
        self.base = _status_bytes("VmRSS")

    def measured(self) -> tuple[float, str]:
        """(GiB, what was measured)."""
        if self.cuda:
            import torch

            return torch.cuda.max_memory_reserved() / GiB, "peak GPU memory reserved by PyTorch"
        return max(0, _status_bytes("VmHWM") - self.base) / GiB, "growth of peak resident memory (CPU)"


def _status_bytes(key: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
