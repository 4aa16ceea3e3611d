"""`model export --merged` writes a model plain transformers loads, with the same greedy output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import colour_dataset

PLAIN = r"""
import json, sys
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
d, image, prompt = sys.argv[1:4]
assert "peft" not in sys.modules
proc = AutoProcessor.from_pretrained(d, use_fast=False)
model = AutoModelForImageTextToText.from_pretrained(d, dtype=torch.float32).eval()
msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
batch = proc(images=[Image.open(image).convert("RGB")], text=[text], return_tensors="pt")
out = model.generate(**batch, max_new_tokens=6, do_sample=False)
print(json.dumps({"text": proc.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip(), "peft": "peft" in sys.modules}))
"""


@pytest.mark.e2e
def test_merged_export_matches_adapter(e2e, tiny_models, tmp_path):
    colour_dataset(e2e, "export-shapes", n=8)
    e2e.mix(
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "export-shapes",
        "--output_model_name",
        "export-llava",
        "--base_model",
        tiny_models["llava"],
        "--max_steps",
        "3",
        "--batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--learning_rate",
        "0.01",
        "--lora_r",
        "8",
        "--max_seq_length",
        "256",
        check=0,
    )
    image = sorted((e2e.root / "task-export-shapes" / "images").glob("test_*.png"))[0]
    prompt = "What colour is the shape?"
    via_adapter = json.loads(
        e2e.mix(
            "model",
            "run",
            "export-llava",
            "--image",
            image,
            "--prompt",
            prompt,
            "--json",
            "--config",
            '{"max_new_tokens": 6}',
            check=0,
        ).stdout
    )["generated_text"]
    e2e.mix("model", "export", "export-llava", "--merged", tmp_path / "merged", check=0)
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    res = subprocess.run(
        [sys.executable, "-c", PLAIN, str(tmp_path / "merged"), str(image), prompt],
        capture_output=True,
        text=True,
        env=e2e.env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    plain = json.loads(res.stdout.strip().splitlines()[-1])
    assert plain["peft"] is False
    assert plain["text"] == via_adapter
