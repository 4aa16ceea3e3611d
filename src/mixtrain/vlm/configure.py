"""Step 2 — configure: the validated spec + the hardware → Axolotl YAML (+ our DeepSpeed JSON).

Pure functions of their inputs, so golden tests can pin the YAML for every family and option.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mixtrain.hardware import Hardware
from mixtrain.vlm.families import Family, module_entries
from mixtrain.vlm.spec import FinetuneSpec

TEMPLATES = Path(__file__).parent / "templates"


def build_config(
    spec: FinetuneSpec,
    family: Family,
    hw: Hardware,
    *,
    train_jsonl: Path,
    eval_jsonl: Path | None = None,
    output_dir: Path,
    run_dir: Path,
    deepspeed_json: Path | None = None,
    wandb_run_name: str = "",
    wandb_online: bool = False,
    warn=print,
    base_config: dict | None = None,
) -> dict:
    cfg: dict = {
        "base_model": spec.base_model,
        "processor_type": "AutoProcessor",
        "trust_remote_code": spec.trust_remote_code,
        # Multimodal: images are processed in the collator, so no pre-tokenised dataset and no packing.
        "skip_prepare_dataset": True,
        "remove_unused_columns": False,
        "sample_packing": False,
        **chat_template_settings(family),
        "datasets": [
            {"path": str(train_jsonl), "ds_type": "json", "type": "chat_template", "field_messages": "messages"}
        ],
        "dataset_prepared_path": str(run_dir / "prepared"),
        "val_set_size": 0,
        "output_dir": str(output_dir),
        **mode_settings(spec, family, base_config or {}),
        "sequence_len": spec.max_seq_length,
        "micro_batch_size": spec.batch_size,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "num_epochs": spec.num_epochs,
        "learning_rate": spec.learning_rate,
        "optimizer": "adamw_torch",
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.03,
        "weight_decay": 0.0,
        "logging_steps": 1,
        "save_strategy": "epoch",
        "save_total_limit": 1,
        "seed": spec.seed,
    }
    if spec.max_steps:
        cfg["max_steps"] = spec.max_steps
        cfg["save_strategy"] = "steps"
        cfg["save_steps"] = spec.max_steps
    if eval_jsonl is not None:  # eval loss on held-out rows or a separate dataset, each epoch or every eval_steps
        cfg["test_datasets"] = [
            {
                "path": str(eval_jsonl),
                "ds_type": "json",
                "type": "chat_template",
                "field_messages": "messages",
                "split": "train",
            }
        ]
        cfg["eval_strategy"] = "steps" if spec.eval_steps else "epoch"
        if spec.eval_steps:
            cfg["eval_steps"] = spec.eval_steps
    if spec.save_steps:  # checkpoints to resume from (`mixtrain workflow resume`); the last one is kept
        cfg["save_strategy"] = "steps"
        cfg["save_steps"] = spec.save_steps
    cfg.update(precision_settings(spec, hw, warn))
    if spec.max_pixels:
        if family.max_pixels:
            cfg["processor_kwargs"] = {**cfg.get("processor_kwargs", {}), "max_pixels": spec.max_pixels}
        else:
            warn(
                f"--max_pixels applies to Qwen2-VL/2.5-VL/3-VL; {family.name} resizes every image to its fixed size — ignored"
            )
    if spec.image_size:  # Axolotl pads each image to this square before the processor (prepare writes `images`)
        cfg["image_size"] = spec.image_size
    if deepspeed_json is not None:
        cfg["deepspeed"] = str(deepspeed_json)
    if spec.wandb_project:
        cfg.update(
            {
                "wandb_project": spec.wandb_project,
                "wandb_name": wandb_run_name or spec.output_model_name,
                "wandb_mode": "online" if wandb_online else "offline",
            }
        )
    return cfg


def lora_target(spec: FinetuneSpec, family: Family) -> str:
    """The LoRA target regex: the language model, and the vision tower's blocks with --train_vision lora."""
    if spec.train_vision == "lora":
        return f"(?:{family.lora_target})|(?:{family.vision_lora_target})"
    return family.lora_target


def full_trained(spec: FinetuneSpec, family: Family) -> tuple[str, ...]:
    """Module paths trained in full (every weight): LoRA's modules_to_save, or full fine-tuning's unfrozen part."""
    vision = {
        "none": (),
        "projector": family.projector,
        "lora": family.projector,  # LoRA on the tower's blocks; the small projector in full
        "full": (family.vision_tower, *family.projector),
    }[spec.train_vision]
    paths = (family.language_model, "lm_head", *vision) if spec.adapter == "full" else vision
    # A module inside another one listed (Qwen's merger inside its tower) is already covered: wrapping it
    # twice in modules_to_save would train a copy inside the copy.
    return tuple(p for p in paths if not any(p.startswith(q + ".") for q in paths))


def unquantized(family: Family) -> tuple[str, ...]:
    """What QLoRA leaves at full precision: the vision tower, the projector and the output head."""
    return (family.vision_tower, *family.projector, "lm_head")


def mode_settings(spec: FinetuneSpec, family: Family, base_config: dict) -> dict:
    """--adapter and --train_vision as Axolotl settings.

    lora/qlora: PEFT LoRA on ``lora_target``; what trains in full (the projector, or the whole tower) is PEFT's
    ``modules_to_save`` (saved with the adapter). qlora adds Axolotl's 4-bit bitsandbytes load with the vision
    tower, projector and head kept out of quantization. full: no adapter; Axolotl's ``unfrozen_parameters``
    (prefixes) freezes everything else — the vision tower stays frozen unless --train_vision says otherwise.
    """
    trained = full_trained(spec, family)
    if spec.adapter == "full":
        out: dict = {}
        if spec.train_vision != "full":  # with the tower too, every weight trains: nothing to freeze
            out["unfrozen_parameters"] = [f"{p}." for p in trained]
        return out
    out = {
        "adapter": spec.adapter,
        "lora_r": spec.lora_r,
        "lora_alpha": spec.lora_alpha,
        "lora_dropout": spec.lora_dropout,
        "lora_target_modules": lora_target(spec, family),
    }
    if trained:
        out["lora_modules_to_save"] = module_entries(family, base_config, trained)
    if spec.adapter == "qlora":
        out["load_in_4bit"] = True
        out["bnb_config_kwargs"] = {"llm_int8_skip_modules": list(unquantized(family))}
    return out


def chat_template_settings(family: Family) -> dict:
    """LLaVA needs our own template: Axolotl's built-in one never emits EOS after the answer."""
    out: dict[str, Any]
    if family.template_file:
        out = {"chat_template": "jinja", "chat_template_jinja": (TEMPLATES / family.template_file).read_text()}
    else:
        out = {"chat_template": family.chat_template}
    if family.answer_start:
        # Mask everything but the assistant's answer (and its EOS) in the loss.
        out["role_boundaries"] = [{"role": "assistant", "start": family.answer_start, "end": "eos_token"}]
    return out


# Axolotl's fused LoRA Triton kernels, stated explicitly on every machine: left unset, Axolotl 0.19 turns them
# on for any CUDA LoRA run, then fails to load every family here — it derives the attention class from the
# top-level model_type ("LlavaAttention", "Qwen2VlAttention" do not exist) — and on CPU they need Triton.
# Setting any one of them also stops the auto-enable of lora_embedding_kernel.
LORA_KERNELS_OFF = {"lora_mlp_kernel": False, "lora_qkv_kernel": False, "lora_o_kernel": False}


def precision_settings(spec: FinetuneSpec, hw: Hardware, warn=print) -> dict:
    if not hw.cuda:
        if spec.use_flash_attention:
            warn("FlashAttention-2 needs a CUDA GPU — using PyTorch SDPA attention on this CPU machine")
        return {
            "bf16": False,
            "fp16": False,
            "tf32": False,
            "attn_implementation": "sdpa",
            "gradient_checkpointing": False,
            **LORA_KERNELS_OFF,
            # The fast (torchvision) image processors are not usable beside CPU-only torch here.
            "processor_kwargs": {"use_fast": False},
            # A loader worker process only competes with training for the few CPU cores.
            "dataloader_num_workers": 0,
        }
    attn = "sdpa"
    if spec.use_flash_attention:
        if not hw.tf32:  # hardware.detect sets tf32 exactly for compute capability >= 8.0 (Ampere+), FA2's minimum
            warn(
                f"FlashAttention-2 needs an Ampere or newer GPU (compute capability 8.0+), not {hw.gpu_name or 'this one'} — using PyTorch SDPA attention"
            )
        elif hw.flash_attn:
            attn = "flash_attention_2"
        else:
            warn(
                "flash_attn is not installed — using PyTorch SDPA attention (pip install flash-attn for FlashAttention-2)"
            )
    return {
        "bf16": "auto" if hw.bf16 else False,
        "fp16": not hw.bf16,
        "tf32": hw.tf32,
        "attn_implementation": attn,
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        **LORA_KERNELS_OFF,
    }


def deepspeed_config(stage: str) -> dict:
    """Our own ZeRO JSON (Axolotl's wheel ships none); "auto" lets the HF trainer fill batch sizes."""
    zero: dict = {
        "stage": 2 if stage == "zero2" else 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == "zero2":
        zero.update({"allgather_partitions": True, "allgather_bucket_size": 500_000_000, "reduce_scatter": True})
    else:
        zero.update(
            {
                "sub_group_size": 0,
                "stage3_prefetch_bucket_size": "auto",
                "stage3_param_persistence_threshold": "auto",
                "stage3_max_live_parameters": 0,
                "stage3_max_reuse_distance": 0,
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {
            "enabled": "auto",
            "auto_cast": False,
            "loss_scale": 0,
            "initial_scale_power": 32,
            "loss_scale_window": 1000,
            "hysteresis": 2,
            "min_loss_scale": 1,
        },
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "wall_clock_breakdown": False,
    }


def write_yaml(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    return path


def write_deepspeed(stage: str, path: Path) -> Path:
    path.write_text(json.dumps(deepspeed_config(stage), indent=2) + "\n")
    return path
