"""GPU fine-tune: ``mixtrain workflow run`` vs plain TRL ``SFTTrainer`` on real-size VLM shapes with random weights.

    python benchmarks/bench_gpu.py [--family qwen2_vl|llava|qwen3_vl|gemma3|both|all] [--steps 20] [--batch 4] [--rows 64] [--json-out F]
    python benchmarks/bench_gpu.py --tiny --family llava --steps 2 --rows 4      # CPU smoke (make bench checks it)

What is compared, per family (Qwen2-VL-7B, LLaVA-1.5-7B, Qwen3-VL-8B and Gemma-3-4B shapes; nothing downloaded):
- The model: transformers config classes with the published 7B shapes (text and vision tower sizes,
  vocabulary, KV heads), random bf16 weights created on the GPU and saved as a normal model folder; the
  tokenizer and processor come from ``mixtrain.testing.tiny_vlm`` (a small offline BPE — token ids stay
  inside the real vocabulary, so compute and memory are the real model's). ``--tiny``: the tiny model itself.
- The data: ``--rows`` rows, each a 448x448 PNG (LLaVA-1.5's processor resizes it to 336 as the real
  one does) + a prompt + an answer of ``--text-tokens`` (default 512) text tokens.
- A: ``mixtrain workflow run vlm-finetune ... --max_steps S --batch_size B`` (dataset create + workflow create
  untimed). Axolotl picks FlashAttention-2 when ``flash_attn`` imports, else SDPA (it says which).
- B: plain TRL ``SFTTrainer`` + peft ``LoraConfig`` in a fresh process, with every training setting read
  from A's generated ``axolotl.yml`` (LoRA r/alpha/dropout/targets, lr, schedule, warmup, batch,
  accumulation, steps, precision, gradient checkpointing, attention implementation, seed), so only the
  framework differs. TRL trains on all tokens, Axolotl on the answer: same FLOPs, different loss mask.
- Measured the same way on both sides: samples/s and train_runtime from the HF Trainer's final metrics
  (both sides are HF Trainer subclasses), wall time of the whole command, peak GPU memory by polling
  ``nvidia-smi`` every 0.2 s (minus the idle baseline), MFU = samples/s x FLOPs/sample / peak FLOP/s with
  FLOPs/sample = 4 x N_text x T + 2 x N_vision x P (frozen base: forward + input-gradient backward for the
  language model, forward only for the frozen vision tower; N without embeddings; attention's T^2 term
  left out), T = tokens per sample, P = vision patches per image. Peak: 989 TFLOP/s bf16 dense for
  H100/H200, 312 for A100, else ``--peak-tflops``.
Prints a table per family and the ratios A/B. Prints numbers only; asserts nothing. Setup and install plan
for a lent GPU machine: benchmarks/README.md. On a GPU, the whole default run fits in ~10 minutes on one H200.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from common import EXAMPLES, MIXTRAIN, workspace  # noqa: E402

# Published shapes (config.json of Qwen/Qwen2-VL-7B-Instruct and llava-hf/llava-1.5-7b-hf).
SHAPES = {
    "qwen2_vl": {
        "image_size": 448,
        "text": dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            max_position_embeddings=32768,
        ),
        "vision": dict(
            depth=32,
            embed_dim=1280,
            num_heads=16,
            mlp_ratio=4,
            hidden_size=3584,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        "top": dict(vocab_size=152064),
    },
    "llava": {
        "image_size": 336,
        "text": dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32064,
            max_position_embeddings=4096,
        ),
        "vision": dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
        ),
        "top": dict(image_seq_length=576),
    },
}
# Qwen/Qwen3-VL-8B-Instruct and google/gemma-3-4b-it (config.json as published).
SHAPES["qwen3_vl"] = {
    "image_size": 448,
    "text": dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=262144,
    ),
    "vision": dict(
        depth=27,
        hidden_size=1152,
        intermediate_size=4304,
        num_heads=16,
        out_hidden_size=4096,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=2304,
        deepstack_visual_indexes=[8, 16, 24],
    ),
    "top": {},
}
SHAPES["gemma3"] = {
    "image_size": 896,
    "text": dict(
        hidden_size=2560,
        intermediate_size=10240,
        num_hidden_layers=34,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=1024,
        vocab_size=262208,
        max_position_embeddings=131072,
    ),
    "vision": dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=896,
        patch_size=14,
    ),
    "top": dict(mm_tokens_per_image=256),
    "tie_word_embeddings": True,
}
# Processor settings that follow the real shape (the tiny builder's are sized for the tiny tower).
PROCESSOR_FIX = {
    "llava": {"patch_size": 14},  # LLaVA-1.5: 14 px patches (the tiny builder's CLIP uses 16)
    "gemma3": {"image_seq_length": 256},  # 64x64 patches pooled to 16x16 soft tokens
}
FAMILY_CHOICES = ("qwen2_vl", "llava", "qwen3_vl", "gemma3")
INPUT_IMAGE_PX = 448
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
PROMPT = "Describe the image."


# ------------------------------------------------------------------------------------------- model


def build_model(family: str, out: Path, tiny: bool) -> Path:
    """A model folder both sides load: the tiny offline VLM, or its processor + real-size random weights."""
    from mixtrain.testing.tiny_vlm import build_tiny_vlm

    if tiny:
        return build_tiny_vlm(family, out)
    shape = SHAPES[family]
    src = build_tiny_vlm(family, out.with_name(out.name + "-processor"), image_size=shape["image_size"])
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = real_shape_config(AutoConfig.from_pretrained(src), family)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(cfg, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    del model
    for f in src.iterdir():  # tokenizer, processor, chat template; not the tiny weights/config
        if f.name not in ("config.json", "model.safetensors", "generation_config.json") and f.is_file():
            shutil.copy2(f, out / f.name)
    if family in PROCESSOR_FIX:
        pc = out / "processor_config.json"
        data = json.loads(pc.read_text())
        data.update(PROCESSOR_FIX[family])
        pc.write_text(json.dumps(data, indent=2))
    shutil.rmtree(src, ignore_errors=True)
    return out


def real_shape_config(tiny_cfg, family: str):
    """The tiny model's config (its token ids) with the published 7B shapes; derived lists rebuilt."""
    shape = SHAPES[family]
    d = tiny_cfg.to_dict()
    d["text_config"].update(shape["text"])
    for derived in ("layer_types", "head_dim"):  # sized for the tiny model: let the config derive them again
        if derived not in shape["text"]:
            d["text_config"].pop(derived, None)
    d["vision_config"].update(shape["vision"])
    d.update(shape["top"])
    if family == "qwen3_vl":
        d["text_config"]["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        }
    if family == "qwen2_vl":
        d["text_config"]["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": [16, 24, 24],
        }
    tie = bool(shape.get("tie_word_embeddings", False))  # Gemma 3 ties its 262k-token embedding and lm_head
    d["tie_word_embeddings"] = tie
    d["text_config"]["tie_word_embeddings"] = tie
    return type(tiny_cfg).from_dict(d)


def param_counts(model_dir: Path) -> dict:
    """Parameters of the language model (without embeddings, lm_head included) and of the vision tower."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(cfg)
    text = vision = 0
    for name, p in model.named_parameters():
        if "embed_tokens" in name:
            continue
        if "visual" in name or "vision_tower" in name or "multi_modal_projector" in name:
            vision += p.numel()
        else:
            text += p.numel()
    vc = cfg.vision_config
    patches = (
        (INPUT_IMAGE_PX // vc.patch_size) ** 2
        if hasattr(vc, "spatial_merge_size")
        else (vc.image_size // vc.patch_size) ** 2 + 1
    )
    return {"text": text, "vision": vision, "patches": patches}


# -------------------------------------------------------------------------------------------- data


def make_rows(model_dir: Path, out: Path, n: int, text_tokens: int) -> tuple[Path, int, str]:
    """``n`` 448 px images + prompt + answer of ``text_tokens`` tokens; CSV path, tokens per sample, answer."""
    import csv as csvmod

    from PIL import Image, ImageDraw
    from transformers import AutoProcessor

    from mixtrain.testing.tiny_vlm import COLOUR_RGB, COLOURS, corpus

    processor = AutoProcessor.from_pretrained(model_dir, use_fast=False)
    tok = processor.tokenizer
    words = " ".join(corpus()).split()
    text = " ".join(words * (1 + 2 * text_tokens // max(1, len(words))))
    answer = tok.decode(tok(text, add_special_tokens=False).input_ids[:text_tokens], skip_special_tokens=True).strip()
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "rows.csv"
    with open(csv, "w", newline="") as fh:
        w = csvmod.writer(fh)
        w.writerow(["image_path", "prompt", "response"])
        for k in range(n):
            img = Image.new("RGB", (INPUT_IMAGE_PX, INPUT_IMAGE_PX), (255, 255, 255))
            ImageDraw.Draw(img).rectangle(
                [40 + k % 50, 60, 300, 380 - k % 40], fill=COLOUR_RGB[COLOURS[k % len(COLOURS)]]
            )
            path = out / f"img_{k:04d}.png"
            img.save(path)
            w.writerow([str(path), PROMPT, answer])
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    sample = processor(images=[Image.open(out / "img_0000.png")], text=[text], return_tensors="pt")
    return csv, int(sample["input_ids"].shape[1]), answer


# ------------------------------------------------------------------------------------- measurement


class GpuMemory:
    """Peak used GPU memory (MiB) over the idle baseline, by polling nvidia-smi — the same for both sides."""

    def __init__(self):
        self.available = shutil.which("nvidia-smi") is not None
        self.peak = self.base = 0
        self._stop = threading.Event()

    def _read(self) -> int:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
        ).stdout
        return int(out.strip().splitlines()[0]) if out.strip() else 0

    def __enter__(self):
        if self.available:
            self.base = self.peak = self._read()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._read())

    def __exit__(self, *exc):
        self._stop.set()

    @property
    def peak_gib(self) -> float | None:
        return (self.peak - self.base) / 1024 if self.available else None


METRICS = re.compile(r"'train_runtime': '?([0-9.]+)'?.*?'train_samples_per_second': '?([0-9.]+)'?")


def stream(cmd, env, cwd, log: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))[:200]} failed ({proc.returncode}); log {log}:\n{text[-4000:]}")
    return took, text


# ---------------------------------------------------------------------------------------- TRL side

TRL_SIDE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, yaml
from datasets import Dataset
from peft import LoraConfig
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import SFTConfig, SFTTrainer

cfg = yaml.safe_load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2])]
out_dir = sys.argv[3]
bf16 = bool(cfg.get("bf16")) and torch.cuda.is_available()
fp16 = bool(cfg.get("fp16")) and torch.cuda.is_available()
dtype = torch.bfloat16 if bf16 else torch.float16 if fp16 else torch.float32
processor = AutoProcessor.from_pretrained(cfg["base_model"], **(cfg.get("processor_kwargs") or {}))
model = AutoModelForImageTextToText.from_pretrained(cfg["base_model"], dtype=dtype, attn_implementation=cfg["attn_implementation"])
data = Dataset.from_list([{
    "images": [Image.open(r["image"]).convert("RGB")],
    "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r["prompt"]}]},
                 {"role": "assistant", "content": [{"type": "text", "text": r["response"]}]}],
} for r in rows])
lora = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                  target_modules=cfg["lora_target_modules"], task_type="CAUSAL_LM")
args = SFTConfig(
    output_dir=out_dir, max_steps=cfg["max_steps"], num_train_epochs=cfg.get("num_epochs", 1),
    per_device_train_batch_size=cfg["micro_batch_size"], gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
    learning_rate=cfg["learning_rate"], lr_scheduler_type=cfg["lr_scheduler"],
    warmup_steps=cfg.get("warmup_steps") or cfg.get("warmup_ratio") or 0,  # transformers 5: a float < 1 is a ratio
    weight_decay=cfg["weight_decay"], optim=cfg["optimizer"], bf16=bf16, fp16=fp16, tf32=bool(cfg.get("tf32")) or None,
    gradient_checkpointing=bool(cfg.get("gradient_checkpointing")),
    gradient_checkpointing_kwargs=cfg.get("gradient_checkpointing_kwargs"), max_length=cfg["sequence_len"],
    logging_steps=1, save_strategy="no", report_to="none", seed=cfg["seed"], remove_unused_columns=False,
    dataloader_num_workers=cfg.get("dataloader_num_workers", 0), use_cpu=not torch.cuda.is_available(),
)
trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=processor, peft_config=lora)
metrics = trainer.train().metrics
peak = torch.cuda.max_memory_reserved() / 2**30 if torch.cuda.is_available() else None
settings = {"lora_r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout,
            "lora_target_modules": lora.target_modules, "micro_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps, "learning_rate": args.learning_rate,
            "max_steps": args.max_steps, "sequence_len": args.max_length, "bf16": args.bf16,
            "attn_implementation": model.config._attn_implementation}
print("TRL-RESULT " + json.dumps({"train_runtime": metrics["train_runtime"], "samples_per_s": metrics["train_samples_per_second"],
      "global_step": trainer.state.global_step, "torch_peak_reserved_gib": peak, "settings": settings}), flush=True)
"""


def trl_rows(csv: Path, out: Path) -> Path:
    import csv as csvmod

    with open(csv) as fh:
        rows = [
            {"image": r["image_path"], "prompt": r["prompt"], "response": r["response"]} for r in csvmod.DictReader(fh)
        ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


# -------------------------------------------------------------------------------------------- main


def bench_family(family: str, args, root: Path) -> dict:
    tmp, env = workspace(f"mixtrain-bench-gpu-{family}-", args.threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent / "src"), env.get("PYTHONPATH", "")) if p)
    home = Path(env["MIXTRAIN_HOME"])
    try:
        t0 = time.perf_counter()
        model_dir = build_model(family, tmp / f"model-{family}", args.tiny)
        params = param_counts(model_dir)
        csv, tokens, _ = make_rows(model_dir, tmp / "data", args.rows, args.text_tokens)
        seq_len = (tokens + 64 + 63) // 64 * 64
        subprocess.run(
            [MIXTRAIN, "dataset", "create", "bench", "--file", str(csv)],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [MIXTRAIN, "workflow", "create", "axolotl_vlm_finetune.py", "--name", "vlm-finetune"],
            env=env,
            cwd=EXAMPLES,
            check=True,
            capture_output=True,
        )
        setup = time.perf_counter() - t0
        print(
            f"[{family}] setup {setup:.1f} s: model {params['text'] / 1e9:.2f}B text + {params['vision'] / 1e9:.2f}B vision params "
            f"(no embeddings), {tokens} tokens/sample, sequence_len {seq_len}",
            flush=True,
        )

        a_cmd = [
            MIXTRAIN,
            "workflow",
            "run",
            "vlm-finetune",
            "--dataset_name",
            "bench",
            "--output_model_name",
            f"bench-{family.replace('_', '-')}",
            "--base_model",
            str(model_dir),
            "--model_type",
            family,
            "--max_steps",
            str(args.steps),
            "--batch_size",
            str(args.batch),
            "--gradient_accumulation_steps",
            "1",
            "--num_epochs",
            "1",
            "--max_seq_length",
            str(seq_len),
        ]
        with GpuMemory() as mem_a:
            a_wall, a_log = stream(a_cmd, env, tmp, tmp / "a.log")
        a_cfg_path = next((home / "runs" / "vlm-finetune").glob("*/axolotl.yml"))
        # An attached run shows a compact view; the trainer's own lines (metrics, memory) are in the run log.
        a_log += (a_cfg_path.parent / "run.log").read_text(errors="replace")
        m = METRICS.search(a_log)
        if not m:
            raise SystemExit(f"no train metrics line in A's run log ({a_cfg_path.parent / 'run.log'})")
        a_cfg = yaml_load(a_cfg_path)
        a = {
            "wall": a_wall,
            "train_runtime": float(m.group(1)),
            "samples_per_s": float(m.group(2)),
            "peak_gib": mem_a.peak_gib,
            "attn": a_cfg.get("attn_implementation"),
            "steps": _last_step(a_log),
            "torch_peak_reserved_gib": _axolotl_reserved(a_log),
        }

        b_cfg = dict(a_cfg)
        b_cfg_path = tmp / "trl.yml"
        import yaml

        b_cfg_path.write_text(yaml.safe_dump(b_cfg, sort_keys=False))
        with GpuMemory() as mem_b:
            b_wall, b_log = stream(
                [
                    sys.executable,
                    "-c",
                    TRL_SIDE,
                    str(b_cfg_path),
                    str(trl_rows(csv, tmp / "rows.jsonl")),
                    str(tmp / "trl-out"),
                ],
                env,
                tmp,
                tmp / "b.log",
            )
        line = next(x for x in b_log.splitlines() if x.startswith("TRL-RESULT "))
        res = json.loads(line[len("TRL-RESULT ") :])
        b = {
            "wall": b_wall,
            "train_runtime": res["train_runtime"],
            "samples_per_s": res["samples_per_s"],
            "peak_gib": mem_b.peak_gib,
            "torch_peak_reserved_gib": res["torch_peak_reserved_gib"],
            "attn": res["settings"]["attn_implementation"],
            "steps": res["global_step"],
            "settings": res["settings"],
        }

        flops = 4 * params["text"] * tokens + 2 * params["vision"] * params["patches"]
        peak = args.peak_tflops or _gpu_peak_tflops()
        for side in (a, b):
            side["tflops"] = side["samples_per_s"] * flops / 1e12
            side["mfu"] = side["tflops"] / peak if peak else None
        report(family, args, a, b, tokens, flops, peak)
        mismatched = {
            k: (a_cfg.get(k), v) for k, v in b["settings"].items() if k in a_cfg and a_cfg.get(k) != v and k != "bf16"
        }
        return {
            "family": family,
            "tokens_per_sample": tokens,
            "flops_per_sample": flops,
            "mixtrain": a,
            "trl": b,
            "settings_mismatch": mismatched,
            "setup_s": setup,
        }
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def _axolotl_reserved(log: str) -> float | None:
    """Axolotl's own end-of-training ``memory/device_reserved (GiB)`` (torch's allocator, like B's figure)."""
    found = re.findall(r"'memory/device_reserved \(GiB\)': '?([0-9.]+)", log)
    return float(found[-1]) if found and torch_cuda() else None


def torch_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _last_step(log: str) -> int | None:
    steps = re.findall(r"(\d+)/(\d+) \[", log)
    return int(steps[-1][0]) if steps else None


def _gpu_peak_tflops() -> float | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        name = torch.cuda.get_device_name(0)
    except Exception:
        return None
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def _fmt(v, spec=".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def report(family, args, a, b, tokens, flops, peak) -> None:
    print(
        f"\n{family}{' (tiny, CPU smoke)' if args.tiny else ' 7B shape, random weights'}: {args.rows} rows, {tokens} tokens/sample, "
        f"batch {args.batch}, {args.steps} steps; attention A={a['attn']} B={b['attn']}; "
        f"FLOPs/sample {flops / 1e12:.2f} TFLOP; peak {_fmt(peak, '.0f')} TFLOP/s"
    )
    print("| side                               | samples/s | train s | wall s | peak GPU GiB | TFLOP/s |   MFU |")
    print("|------------------------------------|-----------|---------|--------|--------------|---------|-------|")
    for name, s in (("A  mixtrain workflow run (Axolotl)", a), ("B  TRL SFTTrainer + peft", b)):
        print(
            f"| {name:<34} | {s['samples_per_s']:9.3f} | {s['train_runtime']:7.1f} | {s['wall']:6.1f} | {_fmt(s['peak_gib']):>12} | "
            f"{s['tflops']:7.2f} | {_fmt(s['mfu'], '.1%'):>5} |"
        )
    ratio = a["samples_per_s"] / b["samples_per_s"]
    mem = (a["peak_gib"] / b["peak_gib"]) if a["peak_gib"] and b["peak_gib"] else None
    print(
        f"ratios A/B: samples/s {ratio:.3f}, wall {a['wall'] / b['wall']:.3f}, peak GPU memory {_fmt(mem, '.3f')} "
        f"(torch's peak reserved: A {_fmt(a['torch_peak_reserved_gib'])} GiB as Axolotl logs it, "
        f"B {_fmt(b['torch_peak_reserved_gib'])} GiB)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=(*FAMILY_CHOICES, "both", "all"), default="both")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke: the tiny offline model instead of 7B shapes")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per side (default 20; --tiny 2)")
    ap.add_argument("--batch", type=int, default=None, help="micro batch size (default 4; --tiny 2)")
    ap.add_argument("--rows", type=int, default=None, help="dataset rows (default 64; --tiny 4)")
    ap.add_argument("--text-tokens", type=int, default=None, help="text tokens per answer (default 512; --tiny 32)")
    ap.add_argument(
        "--peak-tflops", type=float, default=0.0, help="peak dense bf16 TFLOP/s of the GPU (default: from its name)"
    )
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for both sides (CPU)")
    ap.add_argument("--json-out", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tiny_defaults = (
        dict(steps=2, batch=2, rows=4, text_tokens=32)
        if args.tiny
        else dict(steps=20, batch=4, rows=64, text_tokens=512)
    )
    for k, v in tiny_defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    families = {"both": ("qwen2_vl", "llava"), "all": FAMILY_CHOICES}.get(args.family, (args.family,))
    t0 = time.perf_counter()
    results = [bench_family(f, args, HERE) for f in families]
    if len(results) > 1:
        print("\n| family   | samples/s A/B | peak memory A/B | MFU A | MFU B |")
        print("|----------|---------------|-----------------|-------|-------|")
        for r in results:
            a, b = r["mixtrain"], r["trl"]
            mem = a["peak_gib"] / b["peak_gib"] if a["peak_gib"] and b["peak_gib"] else None
            print(
                f"| {r['family']:<8} | {a['samples_per_s'] / b['samples_per_s']:13.3f} | {_fmt(mem, '.3f'):>15} | "
                f"{_fmt(a['mfu'], '.1%'):>5} | {_fmt(b['mfu'], '.1%'):>5} |"
            )
    print(
        f"total {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.2f}; median samples/s ratio "
        f"{statistics.median(r['mixtrain']['samples_per_s'] / r['trl']['samples_per_s'] for r in results):.3f}"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps({"tiny": args.tiny, "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
