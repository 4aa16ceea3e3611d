"""Model families the fine-tune knows, keyed by ``model_type``.

Each entry says how Axolotl should treat the family: its chat template, the LoRA target (language
model only: vLLM ignores LoRA on vision modules, and the vision tower is usually best left frozen),
and what needs special care. The base model's own ``config.json`` is the authority on architecture:
the spec passes ``--model_type llava`` for LLaVA-1.6, so the real family is detected and the
correction is logged.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mixtrain.errors import InvalidInput

LM_LINEAR = r"(mlp|self_attn)\.(up|down|gate|q|k|v|o)_proj"
# The Linear layers of a vision tower's transformer blocks (CLIP/SigLIP, Pixtral, Qwen's ViT, InternViT, Mllama):
# attention and MLP projections only — never the patch embedding, a pooling head or the projector.
VISION_BLOCK_LINEAR = (
    r"(?:[a-z_]+\.)*(?:layers|layer|blocks)\.\d+\.(?:self_attn|attention|attn|mlp|feed_forward)\."
    r"(?:q_proj|k_proj|v_proj|o_proj|out_proj|qkv|proj|projection_layer|fc1|fc2|linear_fc1|linear_fc2|gate_proj|up_proj|down_proj)"
)


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    hf_model_types: tuple[str, ...]  # config.json "model_type" values of this family
    chat_template: str  # Axolotl's chat_template value
    lora_target: str  # regex over module names, language model only
    answer_start: str | None = None  # text that opens the assistant turn, when Axolotl needs it spelled out
    template_file: str | None = None  # our own Jinja template (templates/), used instead of Axolotl's
    trust_remote_code: bool = False
    max_pixels: bool = False  # the processor takes max_pixels (Qwen's dynamic resolution)
    # A variant of a model_type told apart by its vision tower's config (Pixtral: model_type "llava").
    vision_model_type: str | None = None
    # Its chat template refuses a system message in a conversation with an image: such rows lose the system turn.
    no_system_with_image: bool = False
    supported: bool = True
    unsupported_reason: str = ""
    # Module paths (training modes, --train_vision): the language model, the vision tower, the projector/merger.
    language_model: str = "model.language_model"
    vision_tower: str = "model.vision_tower"
    projector: tuple[str, ...] = ("model.multi_modal_projector",)
    # Projector parts that are a ModuleList, with the vision_config key whose length is the list's: PEFT's
    # modules_to_save must wrap each entry (the model indexes the list), not the list.
    projector_lists: tuple[tuple[str, str], ...] = ()

    @property
    def vision_lora_target(self) -> str:
        """LoRA target over the vision tower's blocks (--train_vision lora)."""
        return re.escape(self.vision_tower) + r"\." + VISION_BLOCK_LINEAR


FAMILIES: dict[str, Family] = {
    "llava": Family(
        name="llava",
        description="LLaVA-1.5 (CLIP vision tower + Llama/Vicuna)",
        hf_model_types=("llava",),
        chat_template="llava",
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
        answer_start=" ASSISTANT:",
        template_file="llava.jinja",
    ),
    "llava_next": Family(
        name="llava_next",
        description="LLaVA-1.6 / LLaVA-NeXT (any-resolution tiling)",
        hf_model_types=("llava_next",),
        chat_template="llava",
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
        answer_start=" ASSISTANT:",
        template_file="llava.jinja",
    ),
    "qwen2_vl": Family(
        name="qwen2_vl",
        description="Qwen2-VL and Qwen2.5-VL",
        hf_model_types=("qwen2_vl", "qwen2_5_vl"),
        chat_template="qwen2_vl",
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
        max_pixels=True,
        vision_tower="model.visual",
        projector=("model.visual.merger",),
    ),
    "qwen3_vl": Family(
        name="qwen3_vl",
        description="Qwen3-VL (dense)",
        hf_model_types=("qwen3_vl",),
        # Axolotl has no qwen3_vl template; Qwen2-VL's ChatML one is the same turn format and routes to its
        # strategy, which trains on the answer and its <|im_end|> only.
        chat_template="qwen2_vl",
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
        max_pixels=True,
        vision_tower="model.visual",
        # The deepstack mergers feed intermediate vision features into the language model: projector too.
        projector=("model.visual.merger", "model.visual.deepstack_merger_list"),
        projector_lists=(("model.visual.deepstack_merger_list", "deepstack_visual_indexes"),),
    ),
    "gemma3": Family(
        name="gemma3",
        description="Gemma 3 (SigLIP vision tower, 4B and larger)",
        hf_model_types=("gemma3",),
        chat_template="gemma3",
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
    ),
    "mllama": Family(
        name="mllama",
        description="Llama 3.2 Vision (cross-attention image layers)",
        hf_model_types=("mllama",),
        chat_template="llama3_2_vision",
        # The image enters through cross-attention layers: they are language-model layers to adapt too.
        lora_target=r"model\.language_model\.layers\.\d+\.(mlp|self_attn|cross_attn)\.(up|down|gate|q|k|v|o)_proj",
        no_system_with_image=True,
        vision_tower="model.vision_model",
    ),
    "smolvlm": Family(
        name="smolvlm",
        description="SmolVLM2 (SigLIP tower, pixel-shuffle connector, SmolLM2)",
        hf_model_types=("smolvlm",),
        # Axolotl has no SmolVLM template: the model's own. Its strategy is ours (vlm/axolotl_support.py).
        chat_template="tokenizer_default",
        lora_target=rf"model\.text_model\.layers\.\d+\.{LM_LINEAR}",
        language_model="model.text_model",
        vision_tower="model.vision_model",
        projector=("model.connector",),
    ),
    "internvl": Family(
        name="internvl",
        description="InternVL3 / InternVL3.5 (Hugging Face format, OpenGVLab/*-hf)",
        hf_model_types=("internvl",),
        chat_template="tokenizer_default",  # the model's ChatML template; our strategy (vlm/axolotl_support.py)
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
    ),
    "mistral3": Family(
        name="mistral3",
        description="Mistral Small 3.1 / 3.2 (Pixtral vision tower + patch merger)",
        hf_model_types=("mistral3",),
        chat_template="mistral_v7_tekken",
        # Axolotl's v7-tekken template with the default system prompt's date fixed (it inserts today's date:
        # a row's tokens would change from day to day). Strategy: ours (vlm/axolotl_support.py).
        template_file="mistral_v7_tekken.jinja",
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
    ),
    "pixtral": Family(
        name="pixtral",
        description="Pixtral (a LLaVA model with a Pixtral vision tower, e.g. mistral-community/pixtral-12b)",
        hf_model_types=("llava",),
        vision_model_type="pixtral",
        chat_template="pixtral",  # [INST] … [/INST] with [IMG] where the image goes; Axolotl's Pixtral strategy
        lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
    ),
    "phi3_v": Family(
        name="phi3_v",
        description="Phi-3-Vision (remote code)",
        hf_model_types=("phi3_v",),
        chat_template="phi_3",
        lora_target=r"model\.layers\.\d+\.(mlp\.(gate_up|down)_proj|self_attn\.(qkv|o)_proj)",
        trust_remote_code=True,
        supported=False,
        unsupported_reason=(
            "Axolotl 0.19 has no multimodal support for Phi-3-Vision (its model code lives on the model hub and "
            "Axolotl has no processing strategy for it — Axolotl issue #2791)"
        ),
    ),
    "glm4v": Family(
        name="glm4v",
        description="GLM-4.1V (dense GLM-4 language model)",
        hf_model_types=("glm4v",),
        chat_template="jinja",
        # GLM's turn format with <|endoftext|> closing each answer (its own template closes none: a fine-tune
        # would never learn to stop). Strategy: ours (vlm/axolotl_support.py) — Axolotl's declares no boundaries.
        template_file="glm4v.jinja",
        # The MLP is one fused gate_up_proj Linear.
        lora_target=r"model\.language_model\.layers\.\d+\.(mlp\.(gate_up|down)_proj|self_attn\.(q|k|v|o)_proj)",
    ),
    "lfm2_vl": Family(
        name="lfm2_vl",
        description="LFM2-VL (SigLIP2 tower, LFM2 language model of convolution and attention blocks)",
        hf_model_types=("lfm2_vl",),
        chat_template="tokenizer_default",  # the model's ChatML template; our strategy (vlm/axolotl_support.py)
        # Convolution blocks (conv.in_proj/out_proj), attention blocks (q/k/v_proj, out_proj), SwiGLU w1/w2/w3.
        lora_target=(
            r"model\.language_model\.layers\.\d+\."
            r"(self_attn\.(q|k|v|out)_proj|conv\.(in|out)_proj|feed_forward\.w[123])"
        ),
    ),
    "qwen3_5": Family(
        name="qwen3_5",
        description="Qwen3.5 (dense; Gated-DeltaNet linear attention + full attention)",
        hf_model_types=("qwen3_5",),
        chat_template="qwen3_5",  # Axolotl's template and strategy (ChatML boundaries; the answer's think block)
        # Linear-attention layers (in_proj_qkv/z/b/a, out_proj) are language-model layers too.
        lora_target=(
            r"model\.language_model\.layers\.\d+\."
            r"(mlp\.(gate|up|down)_proj|self_attn\.(q|k|v|o)_proj|linear_attn\.(in_proj_(qkv|z|b|a)|out_proj))"
        ),
        max_pixels=True,
    ),
    # Detected, but refused until they pass the family gate (tests/e2e/test_families_gate.py) — each says why.
    "glm4v_moe": Family(
        name="glm4v_moe",
        description="GLM-4.5V (mixture-of-experts GLM-4.5-Air language model)",
        hf_model_types=("glm4v_moe",),
        chat_template="jinja",
        template_file="glm4v.jinja",
        lora_target=r"model\.language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj",
        supported=False,
        unsupported_reason=(
            "its mixture-of-experts weights are 3-D parameters (experts.gate_up_proj / down_proj) that LoRA on Linear "
            "layers does not reach, so most of the language model would stay untrained; the dense GLM-4.1V "
            "(model_type glm4v) is supported"
        ),
    ),
    **{
        name: Family(
            name=name,
            description=desc,
            hf_model_types=(name,),
            chat_template=name,
            lora_target=rf"model\.language_model\.layers\.\d+\.{LM_LINEAR}",
            supported=False,
            unsupported_reason=why,
        )
        for name, desc, why in (
            (
                "gemma4",
                "Gemma 4",
                "not verified by mixtrain's family gate yet: no tiny offline build of it exists (its processor needs an "
                "audio feature extractor and a video processor beside the image one — no audio weights — and its text "
                "layers add per-layer-input projections, and MoE experts on the 26B, that the LoRA target does not cover)",
            ),
            (
                "llama4",
                "Llama 4",
                "not verified by mixtrain's family gate yet (mixture-of-experts weights are 3-D parameters LoRA "
                "on Linear layers does not reach)",
            ),
        )
    },
}
ALIASES = {
    "qwen2_5_vl": "qwen2_vl",
    "qwen3-vl": "qwen3_vl",
    "gemma-3": "gemma3",
    "llama3_2_vision": "mllama",
    "smolvlm2": "smolvlm",
    "internvl3": "internvl",
    "mistral_small": "mistral3",
    "llava-next": "llava_next",
    "phi3v": "phi3_v",
    "phi-3-vision": "phi3_v",
    "glm4.1v": "glm4v",
    "glm-4.1v": "glm4v",
    "glm4.5v": "glm4v_moe",
    "lfm2-vl": "lfm2_vl",
    "qwen3.5": "qwen3_5",
}


def module_entries(family: Family, config: dict, paths: tuple[str, ...]) -> list[str]:
    """``paths`` as PEFT ``modules_to_save`` entries: a ModuleList (see ``projector_lists``) becomes its entries."""
    lists = dict(family.projector_lists)
    out: list[str] = []
    for path in paths:
        if path in lists:
            n = len((config.get("vision_config") or {}).get(lists[path]) or [])
            out += [f"{path}.{i}" for i in range(n)]
        else:
            out.append(path)
    return out


def get_family(model_type: str) -> Family:
    key = ALIASES.get(model_type, model_type)
    if key not in FAMILIES:
        raise InvalidInput(
            f"unknown model_type {model_type!r}",
            f"use one of: {', '.join(FAMILIES)} (qwen2_vl also covers Qwen2.5-VL)",
        )
    return FAMILIES[key]


def supported_names() -> list[str]:
    return [name for name, f in FAMILIES.items() if f.supported]


def family_for_config(config: dict) -> Family | None:
    """The family of a base model's config.json: its model_type, then its vision tower for variants."""
    hf_type = config.get("model_type", "")
    vision = (config.get("vision_config") or {}).get("model_type")
    rows = [f for f in FAMILIES.values() if hf_type in f.hf_model_types]
    variant = next((f for f in rows if f.vision_model_type and f.vision_model_type == vision), None)
    return variant or next((f for f in rows if not f.vision_model_type), None)


def read_base_config(base_model: str) -> dict | None:
    """The base model's config.json: from a local folder, else from the local HF cache / hub."""
    local = Path(base_model).expanduser()
    if local.is_dir():
        cfg = local / "config.json"
        if not cfg.is_file():
            raise InvalidInput(f"{local} has no config.json", "pass a Hugging Face model folder or a hub id")
        return json.loads(cfg.read_text())
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(base_model, "config.json")).read_text())
    except Exception:
        return None


def resolve(model_type: str, base_model: str, log: Callable[[str], None] = print) -> tuple[Family, dict]:
    """Pick the family: the user's ``model_type``, corrected by the base model's own config when they differ.

    A base model whose config cannot be read is refused (one behaviour for the fine-tune and
    ``model register``): guessing the family from ``model_type`` alone fails later, after the GPU is booked.
    """
    family = get_family(model_type)
    if base_model.startswith(("/", "./", "../", "~")) and not Path(base_model).expanduser().is_dir():
        raise InvalidInput(
            f"base model folder {base_model!r} does not exist", "pass an existing local model folder or a hub id"
        )
    config = read_base_config(base_model)
    if config is None:
        raise InvalidInput(
            f"cannot read base model {base_model!r}: not a local folder, and its config is not in the Hugging Face cache or reachable on the hub",
            "download it first (`huggingface-cli download MODEL`) or pass a local model folder",
        )
    hf_type = config.get("model_type", "")
    detected = family_for_config(config)
    if detected is None:
        raise InvalidInput(
            f"{base_model} is a {hf_type or 'unknown'!r} model, which this fine-tune does not support",
            f"use a base model of one of: {', '.join(dict.fromkeys(t for f in FAMILIES.values() for t in f.hf_model_types))}",
        )
    if detected.name != family.name:
        log(
            f"note: {base_model} is a {hf_type} model — using the {detected.name} handling instead of model_type={family.name}"
        )
    text_type = (config.get("text_config") or {}).get("model_type", "")
    if detected.template_file == "llava.jinja" and text_type == "mistral":
        # e.g. llava-v1.6-mistral-7b-hf: its conversation format is Mistral's [INST] ... [/INST]
        log(f"note: {base_model} has a Mistral language model — using the [INST] ... [/INST] conversation format")
        detected = dataclasses.replace(detected, template_file="llava_mistral.jinja", answer_start=" [/INST]")
    return detected, config
