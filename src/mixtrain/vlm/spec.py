"""The one strict schema of the fine-tune's user-facing parameters — their single source of truth.

The workflow file declares ``run(self, params: FinetuneSpec)``, so the workflow's inputs (type,
default, description, choices, bounds), ``workflow run vlm-finetune --help`` and the checks made
before a run exists all come from these fields. Defaults and help mirror the product spec's
parameter tables. ``extra="forbid"``: a typo is an error, never silently ignored; all problems are
reported at once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mixtrain.errors import InvalidInput
from mixtrain.names import check_name
from mixtrain.workflows.spec import validate_model

DEEPSPEED_CHOICES = ("", "zero2", "zero3")


class FinetuneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, allow_inf_nan=False)

    dataset_name: str = Field(description="Name of mixtrain dataset")
    output_model_name: str = Field(description="Name for fine-tuned model")
    base_model: str = Field("llava-hf/llava-1.5-7b-hf", description="HuggingFace model ID (or a local model folder)")
    model_type: str = Field(
        "llava",
        description="Architecture: llava, llava_next, qwen2_vl, qwen3_vl, gemma3, mllama, smolvlm, internvl, mistral3, "
        "pixtral, glm4v, lfm2_vl (phi3_v is refused); corrected from the base model's config.json",
    )
    adapter: Literal["lora", "qlora", "full"] = Field(
        "lora",
        description="What trains: lora (LoRA adapter on the language model), qlora (LoRA over a 4-bit base through "
        "bitsandbytes; the vision tower stays unquantized), full (every language-model weight; registers full weights)",
    )
    train_vision: Literal["none", "projector", "lora", "full"] = Field(
        "none",
        description="The vision side: none (frozen), projector (projector/merger trained in full), lora (LoRA on the "
        "vision tower's blocks too, plus the projector), full (vision tower and projector trained in full)",
    )
    num_epochs: int = Field(3, ge=1, description="Number of training epochs")
    batch_size: int = Field(2, ge=1, description="Batch size per GPU")
    learning_rate: float = Field(2e-5, gt=0, description="Learning rate")
    gradient_accumulation_steps: int = Field(4, ge=1, description="Gradient accumulation")
    max_seq_length: int = Field(2048, ge=64, le=1_048_576, description="Maximum sequence length")
    lora_r: int = Field(64, ge=1, le=65_536, description="LoRA rank (higher = more capacity)")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling factor")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout rate")
    use_flash_attention: bool = Field(True, description="Use FlashAttention-2 (where CUDA and flash_attn are present)")
    deepspeed_config: Literal["", "zero2", "zero3"] = Field("", description="DeepSpeed stage: zero2, zero3, or empty")
    wandb_project: str = Field("", description="W&B project name (optional; key from the WANDB_API_KEY secret)")
    image_column: str = Field(
        "image_path", description="Column with image paths (or http(s) URLs), one image or a list per row"
    )
    prompt_column: str = Field(
        "prompt", description="Column with prompts (an <image> in the text marks where the image goes)"
    )
    response_column: str = Field("response", description="Column with responses")
    messages_column: str = Field(
        "",
        description=(
            "Column with whole conversations instead of prompt/response: OpenAI `messages` or LLaVA `conversations` "
            "(<image> placeholders take the images of --image_column in order); default: a `messages` or "
            "`conversations` column when the table has no prompt/response columns"
        ),
    )
    response_pick: Literal["fail", "first"] = Field(
        "fail",
        description="A response cell holding a list of answers: fail before training, or train on the first answer",
    )
    on_bad_image: Literal["fail", "skip"] = Field(
        "fail", description="On an unusable row: fail the run before training, or skip the row"
    )
    dry_run: bool = Field(False, description="Prepare data and validate the Axolotl config, then stop")
    verbose: bool = Field(False, description="Also print the generated Axolotl YAML before it is validated or trained")
    trust_remote_code: bool = Field(False, description="Allow model code from the model hub (needed by phi3_v)")
    num_processes: int = Field(0, ge=0, description="Training processes on this node (0: one per GPU, 1 on CPU)")
    max_steps: int = Field(0, ge=0, description="Stop after this many optimizer steps (0: train all epochs)")
    seed: int = Field(42, ge=0, lt=2**32, description="Random seed")
    save_steps: int = Field(
        0,
        ge=0,
        description="Save a checkpoint every N steps (0: at the end of each epoch); `workflow resume` continues from the latest",
    )
    val_set_size: float = Field(
        0.0, ge=0, le=0.5, description="Fraction of rows held out for eval loss (0-0.5), chosen from --seed"
    )
    eval_dataset_name: str = Field("", description="A separate mixtrain dataset (same columns) to compute eval loss on")
    eval_steps: int = Field(
        0, ge=0, description="Eval loss every N steps (0: at the end of each epoch) when evaluating"
    )
    on_long_row: Literal["fail", "skip"] = Field(
        "fail", description="A row longer than --max_seq_length with its image tokens: fail before training, or skip it"
    )
    max_pixels: int | None = Field(
        None,
        gt=0,
        description="Qwen2-VL/2.5-VL: most pixels per image (sets its image tokens; default: the processor's)",
    )
    image_size: int | None = Field(
        None,
        ge=28,
        le=8192,
        description="Resize every image to fit a square of this many pixels, padded black (Axolotl's image_size; default: as stored)",
    )

    @field_validator("eval_dataset_name")
    @classmethod
    def _eval_name(cls, v: str) -> str:
        v = v.strip()
        if v:
            try:
                check_name(v, "dataset")
            except InvalidInput as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _one_row_shape(self):
        plain = [
            f"--{f}"
            for f in ("prompt_column", "response_column")
            if getattr(self, f) != type(self).model_fields[f].default
        ]
        if self.messages_column and plain:
            raise ValueError(
                f"--messages_column and {'/'.join(plain)} both say what a row is — pass a conversation column or prompt/response columns"
            )
        return self

    @model_validator(mode="after")
    def _modes(self):
        if self.adapter == "full" and self.train_vision == "lora":
            raise ValueError(
                "--train_vision lora adds LoRA to a frozen tower, but --adapter full trains weights, not adapters — "
                "use --train_vision full (or projector) with --adapter full, or --adapter lora"
            )
        if self.adapter == "full":
            lora = [
                f"--{f}"
                for f in ("lora_r", "lora_alpha", "lora_dropout")
                if getattr(self, f) != type(self).model_fields[f].default
            ]
            if lora:
                raise ValueError(
                    f"{'/'.join(lora)} set, but --adapter full trains no LoRA — drop {'it' if len(lora) == 1 else 'them'} or use --adapter lora/qlora"
                )
        return self

    @model_validator(mode="after")
    def _one_eval_source(self):
        if self.val_set_size and self.eval_dataset_name:
            raise ValueError("--val_set_size and --eval_dataset_name both choose the eval rows — pass only one")
        return self

    @field_validator("dataset_name", "output_model_name")
    @classmethod
    def _name(cls, v: str, info) -> str:
        try:
            return check_name(v, info.field_name.replace("_name", "").replace("output_", ""))
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("deepspeed_config", mode="before")
    @classmethod
    def _deepspeed(cls, v) -> str:
        v = str(v).strip().lower()
        if v in ("none", "false", "off"):
            v = ""
        if v not in DEEPSPEED_CHOICES:
            raise ValueError(f"{v!r} is not a DeepSpeed stage — use zero2, zero3, or leave it empty")
        return v

    @field_validator("messages_column")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @field_validator("image_column", "prompt_column", "response_column", "base_model")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()


def parse_spec(params: dict) -> FinetuneSpec:
    """Validate, reporting every problem in one InvalidInput."""
    return validate_model(FinetuneSpec, params)
