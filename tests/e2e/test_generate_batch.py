"""Batched generation (models/generate.py) answers exactly what one-at-a-time generation answers.

Left padding, per-row prompt lengths and images of different sizes (Qwen2-VL: a different number of
image tokens per row) are what a broken batch gets wrong; a random LoRA adapter makes the answers long
and different per row, so equal lists are not a coincidence of empty strings.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

PROMPTS = [
    "What colour is the shape?",
    "Describe the image.",
    "What is in the image? Answer with one word.",
    "What",
    "The shape is a",
    "What shape is it?",
]


def _adapter(base: Path, out: Path, seed: int = 1) -> Path:
    """A random LoRA adapter, the same every run (an unseeded one sometimes made a row's answer empty; seed 0 does too)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(base))
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=r".*language_model.*\.(q|v)_proj", init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        get_peft_model(model, lora).save_pretrained(str(out))
    return out


def _rows(tmp: Path) -> list[dict]:
    from mixtrain.testing.colour_task import render

    rng, rows = random.Random(0), []
    for i, prompt in enumerate(PROMPTS):
        path = tmp / f"{i}.png"
        render(("red", "blue", "green")[i % 3], ("circle", "square")[i % 2], 64 + 16 * i, rng).save(path)
        rows.append({"image": str(path), "prompt": prompt})
    return rows


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_batched_equals_one_at_a_time(family, tiny_models, tmp_path, monkeypatch):
    from mixtrain.models.inference import LoadedModel
    from mixtrain.settings import load_settings

    monkeypatch.setenv("MIXTRAIN_HOME", str(tmp_path / "home"))
    info = {
        "name": "m",
        "version": 1,
        "base_model": str(tiny_models[family]),
        "adapter_path": str(_adapter(tiny_models[family], tmp_path / "lora")),
    }
    model = LoadedModel(info, load_settings())
    rows = _rows(tmp_path)
    one = [model.run(row, max_new_tokens=12)["generated_text"] for row in rows]
    batched = [r["generated_text"] for r in model.run_batch(rows, batch_size=len(rows), max_new_tokens=12)]
    assert batched == one
    assert len(set(one)) > 1 and all(one), one  # real, differing answers: the equality means something

    from PIL import Image

    from mixtrain.models.generate import image_prompt

    images = [[Image.open(r["image"]).convert("RGB")] for r in rows]
    gens = model.generate([image_prompt(r["prompt"]) for r in rows], images, max_new_tokens=3)
    for g in gens:
        assert g.completion_tokens <= 3 and g.prompt_tokens > 10
        assert g.finish_reason == ("length" if g.completion_tokens == 3 else "stop")
    stop = one[0][1:3]
    cut = model.generate([image_prompt(rows[0]["prompt"])], images[:1], max_new_tokens=12, stop=[stop])[0]
    assert cut.finish_reason == "stop" and stop not in cut.text and one[0].startswith(cut.text)
