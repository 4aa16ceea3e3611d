"""`model export --merged` writes a model plain transformers loads, with the same greedy output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
def test_merged_export_matches_adapter(families, tiny_models, tmp_path):
    trained = families["llava"]  # the session's shared LLaVA fine-tune
    e2e = families.env
    image = trained.test_image(e2e)
    prompt = "What colour is the shape?"
    via_adapter = json.loads(
        e2e.mix(
            "model",
            "run",
            trained.model,
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
    e2e.mix("model", "export", trained.model, "--merged", tmp_path / "merged", check=0)
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    # The adapter is in the weights: the merged language model differs from the base (the LoRA is not dropped).
    from safetensors.torch import load_file

    base = load_file(tiny_models["llava"] / "model.safetensors")
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    common = [k for k in base if k in merged and base[k].shape == merged[k].shape]
    assert common, (sorted(base)[:5], sorted(merged)[:5])
    changed = [k for k in common if not base[k].equal(merged[k].to(base[k].dtype))]
    assert changed and all("language_model" in k for k in changed), changed[:10]
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
