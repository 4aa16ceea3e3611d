"""Query a registered model: base model + LoRA adapter, one image and one prompt in, text out.

Heavy imports happen here, on first use, never in the CLI's start-up path. The prompt is built with
the processor's own chat template (the one saved with the adapter, i.e. the one it was trained
with) and only the newly generated tokens are decoded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.hardware import detect
from mixtrain.models.generate import Generation, generate_batch, image_prompt, placeholders
from mixtrain.models.weights import is_full_weights

GENERATION_DEFAULTS = {"max_new_tokens": 128, "temperature": 0.0, "top_p": 1.0, "do_sample": None}


def generation_settings(config: dict | None) -> dict:
    config = dict(config or {})
    unknown = sorted(set(config) - set(GENERATION_DEFAULTS))
    if unknown:
        raise InvalidInput(
            f"unknown generation setting(s): {', '.join(unknown)}", f"use: {', '.join(GENERATION_DEFAULTS)}"
        )
    out = {**GENERATION_DEFAULTS, **config}
    try:
        out["max_new_tokens"] = int(out["max_new_tokens"])
        out["temperature"] = float(out["temperature"])
        out["top_p"] = float(out["top_p"])
    except (TypeError, ValueError):
        raise InvalidInput(
            "generation settings must be numbers", 'e.g. {"temperature": 0.2, "max_new_tokens": 64}'
        ) from None
    if out["max_new_tokens"] < 1 or out["temperature"] < 0 or not 0 < out["top_p"] <= 1:
        raise InvalidInput(
            "max_new_tokens must be ≥ 1, temperature ≥ 0 and 0 < top_p ≤ 1", "fix the generation settings"
        )
    if out["do_sample"] is None:
        out["do_sample"] = out["temperature"] > 0  # greedy when temperature is 0
    return out


def check_inputs(inputs) -> tuple[list[str], str]:
    """``{"image": REF, "prompt": TEXT}`` or ``{"images": [REF, ...], "prompt": TEXT}`` → (image refs, prompt)."""
    example = '--inputs \'{"image": "/path/img.jpg", "prompt": "..."}\' or \'{"images": ["/a.jpg", "/b.jpg"], "prompt": "..."}\''
    if not isinstance(inputs, dict):
        raise InvalidInput("inputs must be a JSON object", example)
    if "image" in inputs and "images" in inputs:
        raise InvalidInput("inputs give both 'image' and 'images'", "give one image as 'image', several as 'images'")
    if "images" in inputs:
        images = inputs["images"]
        if not isinstance(images, list) or not images or not all(isinstance(i, str) and i.strip() for i in images):
            raise InvalidInput("'images' must be a non-empty list of image paths or URLs", example)
        refs = [i.strip() for i in images]
    else:
        refs = [str(inputs.get("image") or "").strip()]
    missing = [
        k for k, ok in (("image", bool(refs[0])), ("prompt", bool(str(inputs.get("prompt") or "").strip()))) if not ok
    ]
    if missing:
        raise InvalidInput(f"inputs need {' and '.join(repr(k) for k in missing)}", example)
    extra = sorted(set(inputs) - {"image", "images", "prompt"})
    if extra:
        raise InvalidInput(
            f"unknown input key(s): {', '.join(extra)}", "inputs take 'image' (or 'images') and 'prompt'"
        )
    prompt = str(inputs["prompt"])
    marks = placeholders(prompt)
    if marks and marks != len(refs):
        raise InvalidInput(
            f"the prompt has {marks} <image> placeholder(s) but the inputs give {len(refs)} image(s)",
            "put one <image> where each image goes, or none to show the images before the prompt",
        )
    return refs, prompt


class LoadedModel:
    """A registered model loaded once and reused for many calls (``mixtrain.get_model(name).run(...)``)."""

    def __init__(self, info: Mapping, settings, merged_dir: Path | None = None):
        self.info, self.settings = info, settings
        self.load_seconds = 0.0
        t0 = time.perf_counter()
        self._load(merged_dir)
        self.load_seconds = time.perf_counter() - t0

    def _load(self, merged_dir: Path | None) -> None:
        from mixtrain.models import _fastimport

        adapter, weights, processor_src = self._sources(merged_dir)
        home = getattr(self.settings, "home", None)
        # The weights decide quantized or not; the processor folder decides whether its tokenizer is Mistral-format.
        with _fastimport.lean_imports(weights, processor_src, Path(home) / "cache" if home else None):
            _fastimport.import_inference_stack(with_peft=adapter is not None)
            self._load_model(adapter, weights, processor_src)

    def _sources(self, merged_dir: Path | None) -> tuple[Path | None, Path, Path]:
        """(adapter to apply or None, folder of the weights, folder of the processor)."""
        base = Path(self.info["base_model"])
        from mixtrain.models.registry import local_adapter

        stored = self.info["adapter_path"]
        adapter = Path(local_adapter(stored, self.settings if stored.startswith("s3://") else None)) if stored else None
        if adapter is None:  # a base model registered without an adapter
            return None, base, base
        if merged_dir is not None:  # the adapter is already merged into these weights
            return None, Path(merged_dir), Path(merged_dir)
        if is_full_weights(adapter):  # --adapter full: the folder is the model
            has_processor = any((adapter / f).is_file() for f in ("processor_config.json", "preprocessor_config.json"))
            return None, adapter, (adapter if has_processor else base)
        if not (adapter / "adapter_config.json").is_file():
            raise InvalidInput(
                f"adapter files of {self.info['name']} v{self.info['version']} are missing at {adapter}",
                "re-run the fine-tune",
            )
        has_processor = any((adapter / f).is_file() for f in ("processor_config.json", "preprocessor_config.json"))
        return adapter, base, (adapter if has_processor else base)

    def _load_model(self, adapter: Path | None, weights: Path, processor_src: Path) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        hw = detect()
        if hw.cuda:
            self.device, self.dtype = "cuda", (torch.bfloat16 if hw.bf16 else torch.float16)
        else:
            self.device, self.dtype = "cpu", torch.float32
        self.processor = AutoProcessor.from_pretrained(str(processor_src), use_fast=self.device == "cuda")
        model = AutoModelForImageTextToText.from_pretrained(str(weights), dtype=self.dtype)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
        self.model = model.to(self.device).eval()

    def prompt_text(self, prompt: str) -> str:
        return self.processor.apply_chat_template(
            image_prompt(prompt), add_generation_prompt=True, tokenize=False, enable_thinking=False
        )

    def generate(self, conversations: list[list[dict]], images: list[list], **config) -> list[Generation]:
        """Chat conversations (with their PIL images) in, one batched ``generate``, answers out."""
        gen = {
            **generation_settings({k: v for k, v in config.items() if k not in ("stop", "seed")}),
            **{k: config[k] for k in ("stop", "seed") if k in config},
        }
        return generate_batch(
            self.model, self.processor, conversations, images, gen, device=self.device, dtype=self.dtype
        )

    def run_batch(self, rows: list[dict], batch_size: int = 8, **config) -> list[dict]:
        """Answer many ``{"image" | "images", "prompt"}`` rows, ``batch_size`` per ``generate`` call."""
        from mixtrain.images import load_image

        if batch_size < 1:
            raise InvalidInput(f"batch size must be ≥ 1, got {batch_size}", "pass a positive batch size")
        checked = [check_inputs(row) for row in rows]
        gen = generation_settings(config)
        results: list[dict] = []
        for start in range(0, len(checked), batch_size):
            chunk = checked[start : start + batch_size]
            images = [[load_image(ref, self.settings.image_cache) for ref in refs] for refs, _ in chunk]
            t0 = time.perf_counter()
            outs = generate_batch(
                self.model,
                self.processor,
                [image_prompt(p, len(refs)) for refs, p in chunk],
                images,
                gen,
                device=self.device,
                dtype=self.dtype,
            )
            latency = round((time.perf_counter() - t0) / len(chunk), 4)
            results += [
                {
                    "generated_text": o.text,
                    "model": self.info["name"],
                    "version": self.info["version"],
                    "latency_s": latency,
                }
                for o in outs
            ]
        return results

    def run(self, inputs: dict, **config) -> dict:
        return self.run_batch([inputs], **config)[0]


def export_merged(info: Mapping, settings, out_dir: Path) -> Path:
    """Merge the LoRA into the base weights and save a plain transformers model + processor."""
    import shutil

    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInput(f"{out_dir} is a file, not a folder", "pick a new folder for --merged")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidInput(f"{out_dir} exists and is not empty", "pick a new folder")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:  # probe the destination before minutes of loading and merging
        tmp.mkdir(parents=True)
    except OSError as err:
        raise InvalidInput(
            f"cannot write the export to {out_dir}: {err.strerror or err}", "pick a folder you can write to"
        ) from None
    if not info["adapter_path"]:
        tmp.rmdir()
        raise InvalidInput(f"{info['name']} v{info['version']} is a base model without an adapter", "nothing to merge")
    try:
        loaded = LoadedModel(info, settings)
        # --adapter full: the weights are the model already; nothing to merge.
        from mixtrain.models.registry import local_adapter

        full = is_full_weights(local_adapter(info["adapter_path"], settings))  # s3://: the copy LoadedModel fetched
        merged = loaded.model if full else loaded.model.merge_and_unload()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        loaded.processor.save_pretrained(str(tmp))
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written export left behind
        raise InvalidInput(
            f"cannot write the export to {out_dir}: {err.strerror or err}", "free space or pick another folder"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written export left behind
        raise
    if out_dir.exists():
        out_dir.rmdir()
    tmp.rename(out_dir)
    return out_dir
