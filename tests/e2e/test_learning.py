"""The anti-toy test: fine-tuning must make the model read the image.

A tiny random LLaVA answers "what colour is the shape?" for held-out renderings at chance before
fine-tuning; after a LoRA fine-tune through `mixtrain workflow run vlm-finetune` it must be right on
≥ 90% of them. Scored with `mixtrain model run --inputs-file` (one model load for all rows).
"""

from __future__ import annotations

import json

import pytest

from mixtrain.testing.colour_task import accuracy, make_task

# Documented in the README ("How the demo learns"); the same as `make demo`.
HYPER = ["--num_epochs", "20", "--batch_size", "4", "--gradient_accumulation_steps", "1", "--learning_rate", "3e-3",
         "--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0.0", "--max_seq_length", "256"]


@pytest.mark.e2e
def test_finetune_learns_colour_from_the_image(e2e, tiny_models):
    task = make_task(e2e.root / "learn", n_train=192, n_test=48, size=64, seed=1)
    e2e.mix("dataset", "create", "colours", "--file", task["train_csv"], check=0)
    e2e.mix("model", "register", "base-llava", "--base_model", tiny_models["llava"], "--model_type", "llava", check=0)
    e2e.mix("model", "run", "base-llava", "--config", '{"max_new_tokens": 8}', "--inputs-file", task["test_jsonl"], "--output", e2e.root / "before.jsonl", check=0)
    before = accuracy(e2e.root / "before.jsonl", task["answers"])

    e2e.mix("workflow", "run", "vlm-finetune", "--dataset_name", "colours", "--output_model_name", "colour-llava",
            "--base_model", tiny_models["llava"], *HYPER, check=0)
    e2e.mix("model", "run", "colour-llava", "--config", '{"max_new_tokens": 8}', "--inputs-file", task["test_jsonl"], "--output", e2e.root / "after.jsonl", check=0)
    after = accuracy(e2e.root / "after.jsonl", task["answers"])
    rows = [json.loads(line) for line in (e2e.root / "after.jsonl").read_text().splitlines()]
    assert len(rows) == 48
    print(f"held-out colour accuracy: before {before:.0%} -> after {after:.0%}")
    assert before <= 0.30
    assert after >= 0.90, f"after fine-tuning only {after:.0%}: {[r['generated_text'] for r in rows][:12]}"
