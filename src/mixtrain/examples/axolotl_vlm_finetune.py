"""Fine-tune a vision-language model (LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL) with LoRA through Axolotl.

Register it:  mixtrain workflow create axolotl_vlm_finetune.py --name vlm-finetune
Run it:       mixtrain workflow run vlm-finetune --dataset_name my-vlm-data --output_model_name my-model
The recipe lives in ``mixtrain.vlm.recipe``: prepare → configure → launch → register.
"""

from mixtrain import MixFlow, mixparam


class AxolotlVLMFinetune(MixFlow):
    """Fine-tune a VLM with LoRA through Axolotl on a mixtrain image-text dataset, then register the adapter."""

    _mixflow_gpu = "a100"
    _mixflow_memory = 81920  # 80GB

    # Core
    dataset_name: str = mixparam(description="Name of mixtrain dataset")
    output_model_name: str = mixparam(description="Name for fine-tuned model")
    base_model: str = mixparam(default="llava-hf/llava-1.5-7b-hf", description="HuggingFace model ID (or a local model folder)")
    model_type: str = mixparam(default="llava", description="Architecture: llava, llava_next, qwen2_vl, phi3_v")
    # Training hyperparameters
    num_epochs: int = mixparam(default=3, description="Number of training epochs")
    batch_size: int = mixparam(default=2, description="Batch size per GPU")
    learning_rate: float = mixparam(default=2e-5, description="Learning rate")
    gradient_accumulation_steps: int = mixparam(default=4, description="Gradient accumulation")
    max_seq_length: int = mixparam(default=2048, description="Maximum sequence length")
    # LoRA
    lora_r: int = mixparam(default=64, description="LoRA rank (higher = more capacity)")
    lora_alpha: int = mixparam(default=16, description="LoRA scaling factor")
    lora_dropout: float = mixparam(default=0.05, description="LoRA dropout rate")
    # Advanced
    use_flash_attention: bool = mixparam(default=True, description="Use FlashAttention-2 (where CUDA and flash_attn are present)")
    deepspeed_config: str = mixparam(default="", description="DeepSpeed stage: zero2, zero3, or empty")
    wandb_project: str = mixparam(default="", description="W&B project name (optional; key from the WANDB_API_KEY secret)")
    # Dataset column mapping
    image_column: str = mixparam(default="image_path", description="Column with image paths")
    prompt_column: str = mixparam(default="prompt", description="Column with prompts")
    response_column: str = mixparam(default="response", description="Column with responses")
    # mixtrain extras
    on_bad_image: str = mixparam(default="fail", choices=["fail", "skip"], description="On an unusable row: fail the run before training, or skip the row")
    dry_run: bool = mixparam(default=False, description="Prepare data and validate the Axolotl config, then stop")
    trust_remote_code: bool = mixparam(default=False, description="Allow model code from the hub (needed by phi3_v)")
    num_processes: int = mixparam(default=0, description="Training processes per node (0: one per GPU; 1 on CPU)")
    max_steps: int = mixparam(default=0, description="Stop after this many optimizer steps (0: run all epochs)")
    seed: int = mixparam(default=42, description="Random seed")
    save_steps: int = mixparam(default=0, description="Save a checkpoint every N steps (0: each epoch); `workflow resume` continues from the latest")

    def run(self):
        from mixtrain.vlm.recipe import finetune
        from mixtrain.vlm.spec import FinetuneSpec

        return finetune(**{name: getattr(self, name) for name in FinetuneSpec.model_fields})
