"""A random LoRA adapter for a tiny VLM, made with peft directly (no training) — for serving tests and benchmarks.

Why random B weights (``init_lora_weights=False``): peft's default init makes B zero, so an untrained
adapter would answer exactly like its base and a test could not tell adapters apart. Deterministic per
``seed``. Targets the language model, like the fine-tune recipe.

    python -m mixtrain.testing.tiny_lora --base /tmp/tiny-llava --out /tmp/lora-a --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

LM_TARGET = r"model\.language_model\.layers\.\d+\.(mlp|self_attn)\.(up|down|gate|q|k|v|o)_proj"


def make_tiny_lora(base_dir: str | Path, out_dir: str | Path, seed: int = 1, r: int = 8) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(base_dir), dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(
            model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=LM_TARGET, init_lora_weights=False)
        )
    out = Path(out_dir)
    peft_model.save_pretrained(str(out))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-r", type=int, default=8)
    a = p.parse_args()
    print(make_tiny_lora(a.base, a.out, a.seed, a.r))


if __name__ == "__main__":
    main()
