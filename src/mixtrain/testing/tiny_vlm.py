"""Build tiny random-weight vision-language models fully offline.

Why: the e2e tests, the demo and the benchmarks must run a real Axolotl LoRA fine-tune on a laptop CPU
in seconds, and nothing may be downloaded from a model hub. So each family is assembled here from
transformers classes: a BPE tokenizer trained with `tokenizers` on a small built-in corpus, the
family's real processor class with the family's chat template, and a small random-weight model.
The result is a normal `save_pretrained` directory: `AutoProcessor.from_pretrained(DIR)`,
`AutoModelForImageTextToText.from_pretrained(DIR)` and Axolotl's `base_model: DIR` all load it.

Sizes are chosen so that LoRA on the language model learns the colour of a drawn shape within a minute
of CPU training (the vision tower is random and frozen: it separates colours, not shapes).

    python -m mixtrain.testing.tiny_vlm --family llava --out /tmp/tiny-llava [--seed 0]

Heavy imports (torch, transformers, tokenizers) happen inside functions: importing this module is cheap
and has no side effects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FAMILIES = (
    "llava",
    "llava_next",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "gemma3",
    "mllama",
    "smolvlm",
    "internvl",
    "mistral3",
    "pixtral",
    "glm4v",
    "lfm2_vl",
    "qwen3_5",
)
# Families built by the table-driven builder below (one function each, _NEWER_BUILDERS) rather than the original branches.
NEWER = ("qwen3_vl", "gemma3", "mllama", "smolvlm", "internvl", "mistral3", "pixtral", "glm4v", "lfm2_vl", "qwen3_5")

# Words our synthetic task and the chat templates use; each gets whole-word tokens.
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle")
COLOUR_RGB = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 170),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}

_CORPUS_LINES = (
    "What colour is the shape?",
    "What color is the shape?",
    "What shape is it?",
    "What is in the image?",
    "Describe the image.",
    "Describe this image in one word.",
    "Answer with one word.",
    "The answer is",
    "You are a helpful assistant.",
    "USER: ASSISTANT: SYSTEM: user assistant system",
    "system",
    "user",
    "assistant",
    "What",
    "Picture 1: Video 1: a an the this that is it of in on with and or",
    "The shape is a {colour} {shape}.",
    "A {colour} {shape} on a white background.",
    "A {colour} {shape} on a black background.",
    "{colour} {shape}",
    "{Colour} {Shape}",
    "It is {colour}.",
    "0 1 2 3 4 5 6 7 8 9 . , ? ! : ; ' \" ( ) - _ / \\ < > | [ ] { } # @ & * + = % $ ~ ^ `",
)

# Defaults; any of them can be overridden with build_tiny_vlm(..., **size_overrides).
DEFAULT_SIZES: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vision_hidden_size": 32,
    "vision_intermediate_size": 64,
    "vision_num_hidden_layers": 2,
    "vision_num_attention_heads": 2,
    "image_size": 0,  # 0 = the family default below
    "vocab_size": 600,  # BPE target; the corpus is small, so the real vocabulary ends up smaller
    "max_position_embeddings": 1024,
}
_DEFAULT_IMAGE_SIZE = {
    "llava": 64,
    "llava_next": 64,
    "qwen2_vl": 112,
    "qwen2_5_vl": 112,
    "qwen3_vl": 64,
    "gemma3": 64,
    "mllama": 32,
    "smolvlm": 32,
    "internvl": 32,
    "mistral3": 32,
    "pixtral": 32,
    "glm4v": 32,
    "lfm2_vl": 32,
    "qwen3_5": 64,
}
_CLIP_PATCH = 16
_QWEN_PATCH, _QWEN_MERGE = 14, 2

# LLaVA models get the platform's own LLaVA template (the one the fine-tune trains with): LLaVA-1.5's
# format with EOS closing the assistant turn. One file, read here rather than copied.
LLAVA_TEMPLATE_FILE = Path(__file__).resolve().parents[1] / "vlm" / "templates" / "llava.jinja"


def llava_chat_template() -> str:
    return LLAVA_TEMPLATE_FILE.read_text()


# Qwen2-VL-Instruct's template (Qwen2.5-VL uses the same one). Turns end with <|im_end|>, the EOS.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_LLAVA_SPECIALS = ("<unk>", "<s>", "</s>", "<image>", "<pad>")  # Llama order: unk=0, bos=1, eos=2
_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def corpus() -> list[str]:
    """The built-in tokenizer training corpus (every colour x shape, in the phrasings we use)."""
    lines: list[str] = []
    for line in _CORPUS_LINES:
        if "{" not in line or "{ }" in line:
            lines.append(line)
            continue
        for colour in COLOURS:
            for shape in SHAPES:
                lines.append(
                    line.format(colour=colour, shape=shape, Colour=colour.capitalize(), Shape=shape.capitalize())
                )
    return lines


def _resolve_sizes(family: str, overrides: dict[str, Any]) -> dict[str, int]:
    unknown = sorted(set(overrides) - set(DEFAULT_SIZES))
    if unknown:
        raise ValueError(f"unknown size override(s) {unknown}; allowed: {sorted(DEFAULT_SIZES)}")
    sizes = {**DEFAULT_SIZES, **{k: int(v) for k, v in overrides.items()}}
    if not sizes["image_size"]:
        sizes["image_size"] = _DEFAULT_IMAGE_SIZE[family]
    step = _CLIP_PATCH if family.startswith("llava") else _QWEN_PATCH * _QWEN_MERGE
    if family in NEWER:
        step = _NEWER_STEP[family]
    if sizes["image_size"] % step:
        raise ValueError(f"image_size={sizes['image_size']} must be a multiple of {step} for {family}")
    for text, heads in (("hidden_size", "num_attention_heads"), ("vision_hidden_size", "vision_num_attention_heads")):
        if sizes[text] % sizes[heads]:
            raise ValueError(f"{text}={sizes[text]} must be divisible by {heads}={sizes[heads]}")
    if family.startswith("qwen2") and (sizes["hidden_size"] // sizes["num_attention_heads"]) % 4:
        raise ValueError("Qwen families need hidden_size / num_attention_heads divisible by 4 (M-RoPE sections)")
    return sizes


# ---------------------------------------------------------------------------------------- tokenizer


def _build_tokenizer(family: str, vocab_size: int):
    """Train a BPE tokenizer on the corpus and wrap it as a transformers fast tokenizer.

    LLaVA gets a Llama-style tokenizer (Metaspace `▁`, BOS `<s>` prepended, EOS `</s>`); Qwen gets a
    byte-level one (no BOS; `<|im_end|>` is the EOS, `<|endoftext|>` the pad), as the real ones do.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    lines = corpus()
    if family.startswith("llava"):
        specials = list(_LLAVA_SPECIALS)
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        alphabet = sorted({c for line in lines for c in line.replace(" ", "▁")} | {"▁", "\n"})
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
        )
        tok.train_from_iterator(lines, trainer)
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            extra_special_tokens={"image_token": "<image>"},
            padding_side="left",
            model_max_length=DEFAULT_SIZES["max_position_embeddings"],
        )
    else:
        specials = list(_QWEN_SPECIALS)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(lines, trainer)
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_special_tokens={
                "image_token": "<|image_pad|>",
                "video_token": "<|video_pad|>",
                "vision_bos_token": "<|vision_start|>",
                "vision_eos_token": "<|vision_end|>",
            },
            padding_side="left",
            model_max_length=DEFAULT_SIZES["max_position_embeddings"],
        )
    return wrapped


# ---------------------------------------------------------------------------------------- processor


def _torchvision_ok() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


def _image_processor(name: str, **kwargs):
    """The torchvision-backed class when torchvision imports, else its PIL twin (same saved config)."""
    import transformers

    cls = getattr(transformers, name) if _torchvision_ok() else getattr(transformers, name + "Pil")
    return cls(**kwargs)


def _build_processor(family: str, tokenizer, sizes: dict[str, int]):
    import transformers

    img = sizes["image_size"]
    if family in ("llava", "llava_next"):
        common = dict(
            size={"shortest_edge": img},
            crop_size={"height": img, "width": img},
            do_center_crop=True,
        )
        if family == "llava":
            image_processor = _image_processor("CLIPImageProcessor", **common)
            cls = transformers.LlavaProcessor
        else:
            image_processor = _image_processor(
                "LlavaNextImageProcessor", image_grid_pinpoints=_llava_next_pinpoints(img), **common
            )
            cls = transformers.LlavaNextProcessor
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=_CLIP_PATCH,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's CLS token (dropped by the "default" strategy)
            chat_template=llava_chat_template(),
            image_token="<image>",
        )

    if not _torchvision_ok():
        raise RuntimeError(
            f"{family} processors need torchvision (their video processor); on a CPU-only torch run "
            "`python scripts/torchvision_cpu_compat.py` first"
        )
    # min_pixels == max_pixels: every image becomes img x img -> (img/28)^2 image tokens.
    pixels = dict(
        size={"shortest_edge": img * img, "longest_edge": img * img},
        patch_size=_QWEN_PATCH,
        temporal_patch_size=2,
        merge_size=_QWEN_MERGE,
    )
    image_processor = _image_processor("Qwen2VLImageProcessor", **pixels)
    video_processor = transformers.Qwen2VLVideoProcessor(**pixels)
    cls = transformers.Qwen2VLProcessor if family == "qwen2_vl" else transformers.Qwen2_5_VLProcessor
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def _llava_next_pinpoints(img: int) -> list[list[int]]:
    return [[img, img], [img, 2 * img], [2 * img, img], [2 * img, 2 * img]]


# ---------------------------------------------------------------------------------------- model


def _round_up(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


def _build_model(family: str, tokenizer, sizes: dict[str, int]):
    import transformers

    tid = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=_round_up(len(tokenizer)),
        hidden_size=sizes["hidden_size"],
        intermediate_size=sizes["intermediate_size"],
        num_hidden_layers=sizes["num_hidden_layers"],
        num_attention_heads=sizes["num_attention_heads"],
        num_key_value_heads=sizes["num_attention_heads"],
        max_position_embeddings=sizes["max_position_embeddings"],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    img = sizes["image_size"]
    if family in ("llava", "llava_next"):
        vision = transformers.CLIPVisionConfig(
            hidden_size=sizes["vision_hidden_size"],
            intermediate_size=sizes["vision_intermediate_size"],
            num_hidden_layers=sizes["vision_num_hidden_layers"],
            num_attention_heads=sizes["vision_num_attention_heads"],
            projection_dim=sizes["vision_hidden_size"],
            image_size=img,
            patch_size=_CLIP_PATCH,
        )
        text_config = transformers.LlamaConfig(bos_token_id=tokenizer.bos_token_id, **text)
        common = dict(
            vision_config=vision,
            text_config=text_config,
            image_token_index=tid("<image>"),
            image_seq_length=(img // _CLIP_PATCH) ** 2,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
        )
        if family == "llava":
            config = transformers.LlavaConfig(**common)
            model = transformers.LlavaForConditionalGeneration(config)
        else:
            config = transformers.LlavaNextConfig(image_grid_pinpoints=_llava_next_pinpoints(img), **common)
            model = transformers.LlavaNextForConditionalGeneration(config)
        eos_ids: int | list[int] = tokenizer.eos_token_id
        bos_id = tokenizer.bos_token_id
    else:
        half = sizes["hidden_size"] // sizes["num_attention_heads"] // 2
        t = half // 4
        mrope = [t, (half - t) // 2, half - t - (half - t) // 2]  # Qwen's [16, 24, 24] for head_dim 128
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope}
        bos_id = tid("<|endoftext|>")
        ids = dict(
            image_token_id=tid("<|image_pad|>"),
            video_token_id=tid("<|video_pad|>"),
            vision_start_token_id=tid("<|vision_start|>"),
            vision_end_token_id=tid("<|vision_end|>"),
        )
        if family == "qwen2_vl":
            vision = dict(
                depth=sizes["vision_num_hidden_layers"],
                embed_dim=sizes["vision_hidden_size"],
                hidden_size=sizes["hidden_size"],
                num_heads=sizes["vision_num_attention_heads"],
                mlp_ratio=max(1, sizes["vision_intermediate_size"] // sizes["vision_hidden_size"]),
                patch_size=_QWEN_PATCH,
                spatial_merge_size=_QWEN_MERGE,
                temporal_patch_size=2,
            )
            config = transformers.Qwen2VLConfig(
                text_config=dict(bos_token_id=bos_id, **text), vision_config=vision, **ids
            )
            model = transformers.Qwen2VLForConditionalGeneration(config)
        else:
            depth = sizes["vision_num_hidden_layers"]
            vision = dict(
                depth=depth,
                hidden_size=sizes["vision_hidden_size"],
                intermediate_size=sizes["vision_intermediate_size"],
                num_heads=sizes["vision_num_attention_heads"],
                out_hidden_size=sizes["hidden_size"],
                patch_size=_QWEN_PATCH,
                spatial_merge_size=_QWEN_MERGE,
                temporal_patch_size=2,
                window_size=img,  # one attention window per image at our sizes
                fullatt_block_indexes=[depth - 1],
            )
            config = transformers.Qwen2_5_VLConfig(
                text_config=dict(bos_token_id=bos_id, **text), vision_config=vision, **ids
            )
            model = transformers.Qwen2_5_VLForConditionalGeneration(config)
        eos_ids = [tokenizer.eos_token_id, bos_id]  # <|im_end|>, <|endoftext|> as in Qwen's generation_config
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=bos_id, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id
    )
    return model


# ---------------------------------------------------------------------------------------- entry points


def build_tiny_vlm(family: str, out_dir: str | Path, seed: int = 0, **size_overrides: int) -> Path:
    """Build a tiny random `family` VLM (model, tokenizer, processor) into `out_dir`; return its path.

    Deterministic for a given `seed` and sizes. `size_overrides` are keys of DEFAULT_SIZES.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    sizes = _resolve_sizes(family, size_overrides)
    if family in NEWER:
        return _build_newer(family, Path(out_dir), seed, sizes)

    import torch

    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(family, sizes["vocab_size"])
    processor = _build_processor(family, tokenizer, sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_model(family, tokenizer, sizes).to(torch.float32).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _normalise_image_processor_type(out)
    meta = {"family": family, "seed": seed, "sizes": sizes, "builder": "mixtrain.testing.tiny_vlm"}
    (out / "tiny_vlm.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _normalise_image_processor_type(out: Path) -> None:
    """Save the backend-neutral class name, so loading picks torchvision or PIL per machine."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = out / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        target = data.get("image_processor", data)
        kind = target.get("image_processor_type")
        if isinstance(kind, str) and kind.endswith("Pil"):
            target["image_processor_type"] = kind[: -len("Pil")]
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------- newer families
# Table-driven: one function per family returns (processor, model, EOS ids for generation). The chat
# template is the one the fine-tune trains with (Axolotl's file for the family, read without importing
# Axolotl), so the base model, the preflight and the trained adapter all render rows the same way.

_NEWER_STEP = {
    "qwen3_vl": 32,
    "gemma3": 16,
    "mllama": 16,
    "smolvlm": 16,
    "internvl": 16,
    "mistral3": 16,
    "pixtral": 8,
    "glm4v": 16,
    "lfm2_vl": 16,
    "qwen3_5": 32,
}  # image_size granularity: patch (x merge) of the vision tower


def axolotl_template(name: str) -> str:
    """Axolotl's own chat template ``name`` (its ``chat_template: name``), read from its package files."""
    import importlib.util

    spec = importlib.util.find_spec("axolotl")
    if spec is None or spec.origin is None:
        raise RuntimeError("axolotl is not installed: its chat templates are needed to build this family")
    return (Path(spec.origin).parent / "utils" / "chat_templates" / "templates" / f"{name}.jinja").read_text()


def _byte_level_tokenizer(specials: list[str], *, bos: str | None = None, **wrap: Any):
    """A byte-level BPE trained on the corpus (ids of ``specials`` first, in order), as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=DEFAULT_SIZES["vocab_size"],
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        padding_side="left",
        model_max_length=DEFAULT_SIZES["max_position_embeddings"],
        **wrap,
    )


def _text_sizes(tokenizer, sizes: dict[str, int]) -> dict[str, Any]:
    return dict(
        vocab_size=_round_up(len(tokenizer)),
        hidden_size=sizes["hidden_size"],
        intermediate_size=sizes["intermediate_size"],
        num_hidden_layers=sizes["num_hidden_layers"],
        num_attention_heads=sizes["num_attention_heads"],
        num_key_value_heads=sizes["num_attention_heads"],
        head_dim=sizes["hidden_size"] // sizes["num_attention_heads"],
        max_position_embeddings=sizes["max_position_embeddings"],
        pad_token_id=tokenizer.pad_token_id,
    )


def _qwen3_vl(sizes: dict[str, int]):
    import transformers

    tokenizer = _byte_level_tokenizer(
        list(_QWEN_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    img, patch = sizes["image_size"], 16
    pixels = dict(
        size={"shortest_edge": img * img, "longest_edge": 4 * img * img},  # several token counts per aspect
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = transformers.Qwen3VLProcessor(
        image_processor=_image_processor("Qwen2VLImageProcessor", **pixels),
        tokenizer=tokenizer,
        video_processor=transformers.Qwen3VLVideoProcessor(**pixels),
        chat_template=axolotl_template("qwen2_vl"),
    )
    tid = tokenizer.convert_tokens_to_ids
    text = _text_sizes(tokenizer, sizes)
    half = text["head_dim"] // 2
    t = half - 2 * (half // 4)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5_000_000.0,
        "mrope_section": [t, half // 4, half // 4],  # Qwen3-VL's [24, 20, 20] for head_dim 128
        "mrope_interleaved": True,
    }
    vision = dict(
        depth=sizes["vision_num_hidden_layers"],
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_heads=sizes["vision_num_attention_heads"],
        out_hidden_size=sizes["hidden_size"],
        patch_size=patch,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=(img // patch) ** 2,
        deepstack_visual_indexes=[0],
    )
    config = transformers.Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    model = transformers.Qwen3VLForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id, tid("<|endoftext|>")]


_GEMMA_SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)


def _gemma3(sizes: dict[str, int]):
    import transformers

    tokenizer = _byte_level_tokenizer(
        list(_GEMMA_SPECIALS),
        bos="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    img, patch, per_image = sizes["image_size"], 16, 4  # 4x4 patches pooled to 2x2 image tokens
    processor = transformers.Gemma3Processor(
        image_processor=_image_processor(
            "Gemma3ImageProcessor",
            size={"height": img, "width": img},
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        ),
        tokenizer=tokenizer,
        chat_template=axolotl_template("gemma3"),
        image_seq_length=per_image,
    )
    tid = tokenizer.convert_tokens_to_ids
    text = _text_sizes(tokenizer, sizes)
    text_config = transformers.Gemma3TextConfig(
        **text,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tid("<end_of_turn>")],
        query_pre_attn_scalar=text["head_dim"],
        sliding_window=256,
    )
    vision = transformers.SiglipVisionConfig(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_num_hidden_layers"],
        num_attention_heads=sizes["vision_num_attention_heads"],
        image_size=img,
        patch_size=patch,
    )
    config = transformers.Gemma3Config(
        text_config=text_config,
        vision_config=vision,
        mm_tokens_per_image=per_image,
        boi_token_index=tid("<start_of_image>"),
        eoi_token_index=tid("<end_of_image>"),
        image_token_index=tid("<image_soft_token>"),
    )
    model = transformers.Gemma3ForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id, tid("<end_of_turn>")]


_LLAMA3_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
    "<|python_tag|>",
    "<|image|>",
)


def _mllama(sizes: dict[str, int]):
    """Llama 3.2 Vision: the image is one <|image|> token; its features enter through cross-attention layers."""
    import transformers

    tokenizer = _byte_level_tokenizer(
        list(_LLAMA3_SPECIALS),
        bos="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        extra_special_tokens={"image_token": "<|image|>"},
    )
    img, patch = sizes["image_size"], 16
    processor = transformers.MllamaProcessor(
        image_processor=_image_processor("MllamaImageProcessor", size={"height": img, "width": img}, max_image_tiles=2),
        tokenizer=tokenizer,
        chat_template=axolotl_template("llama3_2_vision"),
    )
    tid = tokenizer.convert_tokens_to_ids
    text = _text_sizes(tokenizer, sizes)
    text.pop("head_dim")
    layers = text["num_hidden_layers"] = max(3, sizes["num_hidden_layers"])
    text_config = transformers.MllamaTextConfig(
        **text,
        cross_attention_layers=[layers - 2],  # one cross-attention layer between self-attention ones
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 500_000.0},
    )
    vh = sizes["vision_hidden_size"]
    vision = transformers.MllamaVisionConfig(
        hidden_size=vh,
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_num_hidden_layers"],
        num_global_layers=1,
        attention_heads=sizes["vision_num_attention_heads"],
        image_size=img,
        patch_size=patch,
        max_num_tiles=2,
        intermediate_layers_indices=[0],
        vision_output_dim=vh * 2,  # the last layer + one intermediate layer
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )
    config = transformers.MllamaConfig(
        text_config=text_config, vision_config=vision, image_token_index=tid("<|image|>")
    )
    model = transformers.MllamaForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id, tid("<|end_of_text|>")]


# SmolVLM2's chat template (HuggingFaceTB/SmolVLM2-*-Instruct): "User:" / "Assistant:" turns closed by
# <end_of_utterance>.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _smolvlm(sizes: dict[str, int]):
    """SmolVLM2: a SigLIP-style tower, pixel-shuffle connector, SmolLM2 (Llama) text model; large images
    are split into up to 2x2 tiles plus a global view, each ``image_seq_len`` <image> tokens."""
    import transformers

    grid = [f"<row_{r}_col_{c}>" for r in (1, 2) for c in (1, 2)]
    tokenizer = _byte_level_tokenizer(
        [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<end_of_utterance>",
            "<fake_token_around_image>",
            "<image>",
            "<global-img>",
            "<video>",
            *grid,
        ],
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        extra_special_tokens={
            "fake_image_token": "<fake_token_around_image>",
            "image_token": "<image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    img, patch, scale = sizes["image_size"], 8, 2
    seq = (img // patch) ** 2 // scale**2
    common = dict(size={"longest_edge": 2 * img}, max_image_size={"longest_edge": img}, do_image_splitting=True)
    processor = transformers.SmolVLMProcessor(
        image_processor=_image_processor("SmolVLMImageProcessor", **common),
        tokenizer=tokenizer,
        video_processor=transformers.SmolVLMVideoProcessor(**common),
        image_seq_len=seq,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    tid = tokenizer.convert_tokens_to_ids
    text = _text_sizes(tokenizer, sizes)
    text.pop("head_dim")
    config = transformers.SmolVLMConfig(
        text_config=transformers.LlamaConfig(
            **text, eos_token_id=tokenizer.eos_token_id, bos_token_id=tid("<|im_start|>")
        ),
        vision_config=dict(
            hidden_size=sizes["vision_hidden_size"],
            intermediate_size=sizes["vision_intermediate_size"],
            num_hidden_layers=sizes["vision_num_hidden_layers"],
            num_attention_heads=sizes["vision_num_attention_heads"],
            image_size=img,
            patch_size=patch,
        ),
        scale_factor=scale,
        image_token_id=tid("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = transformers.SmolVLMForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id]


# InternVL3-hf's chat template: ChatML turns, <IMG_CONTEXT> where an image goes (the processor expands it).
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)


def _internvl(sizes: dict[str, int]):
    """InternVL3 (HF format): InternViT tower, pixel-shuffle MLP projector, Qwen2 text model; images are cut
    into up to 4 tiles plus a thumbnail, each ``image_seq_length`` <IMG_CONTEXT> tokens inside <img>…</img>."""
    import transformers

    tokenizer = _byte_level_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    img, patch = sizes["image_size"], 8
    seq = (img // patch) ** 2 // 4  # downsample_ratio 0.5 in each direction
    tiles = dict(size={"height": img, "width": img}, crop_to_patches=True, min_patches=1, max_patches=4)
    processor = transformers.InternVLProcessor(
        image_processor=_image_processor("GotOcr2ImageProcessor", **tiles),
        tokenizer=tokenizer,
        video_processor=transformers.InternVLVideoProcessor(size={"height": img, "width": img}),
        image_seq_length=seq,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    text = _text_sizes(tokenizer, sizes)
    text.pop("head_dim")
    config = transformers.InternVLConfig(
        text_config=dict(model_type="qwen2", eos_token_id=tokenizer.eos_token_id, **text),
        vision_config=dict(
            hidden_size=sizes["vision_hidden_size"],
            intermediate_size=sizes["vision_intermediate_size"],
            num_hidden_layers=sizes["vision_num_hidden_layers"],
            num_attention_heads=sizes["vision_num_attention_heads"],
            image_size=[img, img],
            patch_size=[patch, patch],
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=seq,
        tie_word_embeddings=False,
    )
    model = transformers.InternVLForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id]


_MISTRAL_SPECIALS = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[IMG]",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "<pad>",
)


def _pixtral_parts(sizes: dict[str, int], *, merge: int, template: str):
    """Tokenizer + PixtralProcessor + vision config shared by Pixtral (LLaVA class) and Mistral Small 3.x.

    An image becomes rows of [IMG] tokens, each row closed by [IMG_BREAK], the last by [IMG_END]; the
    count follows the image's aspect ratio (longest edge ``image_size``)."""
    import transformers

    tokenizer = _byte_level_tokenizer(
        list(_MISTRAL_SPECIALS), bos="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    img, patch = sizes["image_size"], 8
    processor = transformers.PixtralProcessor(
        image_processor=_image_processor(
            "PixtralImageProcessor",
            size={"longest_edge": img},
            patch_size={"height": patch, "width": patch},
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        spatial_merge_size=merge,
        chat_template=template,
    )
    vision = transformers.PixtralVisionConfig(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_num_hidden_layers"],
        num_attention_heads=sizes["vision_num_attention_heads"],
        image_size=img,
        patch_size=patch,
        head_dim=sizes["vision_hidden_size"] // sizes["vision_num_attention_heads"],
    )
    text = _text_sizes(tokenizer, sizes)
    text_config = transformers.MistralConfig(
        **text, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, sliding_window=None
    )
    return tokenizer, processor, vision, text_config


def _pixtral(sizes: dict[str, int]):
    """Pixtral-12B in transformers' format: a LLaVA model whose vision tower is Pixtral's (model_type llava)."""
    import transformers

    tokenizer, processor, vision, text_config = _pixtral_parts(sizes, merge=1, template=axolotl_template("pixtral"))
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        projector_hidden_act="gelu",
    )
    model = transformers.LlavaForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id]


def _mistral3(sizes: dict[str, int]):
    """Mistral Small 3.1 / 3.2: Pixtral tower, 2x2 patch merger, Mistral text model."""
    import transformers

    tokenizer, processor, vision, text_config = _pixtral_parts(
        sizes, merge=2, template=(LLAVA_TEMPLATE_FILE.parent / "mistral_v7_tekken.jinja").read_text()
    )
    config = transformers.Mistral3Config(
        vision_config=vision,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        tie_word_embeddings=False,
    )
    model = transformers.Mistral3ForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id]


_GLM_SPECIALS = (
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
)


def _glm4v(sizes: dict[str, int]):
    """GLM-4.1V: a Qwen2-VL-style tower (M-RoPE, 2x2 patch merge) and a GLM-4 text model whose MLP is one fused
    ``gate_up_proj``; an image is <|begin_of_image|> + its <|image|> tokens + <|end_of_image|>."""
    import transformers

    tokenizer = _byte_level_tokenizer(
        list(_GLM_SPECIALS),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
    )
    img, patch = sizes["image_size"], 8
    pixels = dict(
        size={"shortest_edge": img * img, "longest_edge": 4 * img * img},  # several token counts per aspect
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = transformers.Glm4vProcessor(
        image_processor=_image_processor("Glm4vImageProcessor", **pixels),
        tokenizer=tokenizer,
        video_processor=transformers.Glm4vVideoProcessor(**pixels),
        chat_template=(LLAVA_TEMPLATE_FILE.parent / "glm4v.jinja").read_text(),
    )
    tid = tokenizer.convert_tokens_to_ids
    text = _text_sizes(tokenizer, sizes)
    text.pop("head_dim")
    head = sizes["hidden_size"] // sizes["num_attention_heads"]
    quarter = head // 4  # GLM rotates half of each head: M-RoPE sections (GLM-4.1V: [8, 12, 12]) sum to head_dim / 4
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10_000.0,
        "mrope_section": [quarter - 2 * (quarter // 3), quarter // 3, quarter // 3],
        "partial_rotary_factor": 0.5,
    }
    vision = dict(
        depth=sizes["vision_num_hidden_layers"],
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_heads=sizes["vision_num_attention_heads"],
        out_hidden_size=sizes["hidden_size"],
        image_size=img,
        patch_size=patch,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    config = transformers.Glm4vConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tid("<|image|>"),
        video_token_id=tid("<|video|>"),
        image_start_token_id=tid("<|begin_of_image|>"),
        image_end_token_id=tid("<|end_of_image|>"),
        video_start_token_id=tid("<|begin_of_video|>"),
        video_end_token_id=tid("<|end_of_video|>"),
        tie_word_embeddings=False,
    )
    model = transformers.Glm4vForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id, tid("<|user|>"), tid("<|observation|>")]


# LFM2-VL's chat template (LiquidAI/LFM2-VL-*): ChatML turns after <|startoftext|>, <image> where an image goes.
LFM2_VL_CHAT_TEMPLATE = (
    "{{- bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _lfm2_vl(sizes: dict[str, int]):
    """LFM2-VL: a SigLIP2 NaFlex tower, pixel-unshuffle MLP projector, and an LFM2 text model mixing short
    convolution blocks (``conv.in_proj`` / ``conv.out_proj``) with attention blocks (``q/k/v_proj``, ``out_proj``),
    each followed by a SwiGLU ``feed_forward`` (``w1``, ``w2``, ``w3``). Large images become tiles + a thumbnail."""
    import transformers

    grid = [f"<|img_row_{r}_col_{c}|>" for r in (1, 2) for c in (1, 2)]
    tokenizer = _byte_level_tokenizer(
        [
            "<|pad|>",
            "<|startoftext|>",
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<image>",
            "<|image_start|>",
            "<|image_end|>",
            "<|img_thumbnail|>",
            *grid,
        ],
        bos="<|startoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        extra_special_tokens={
            "image_token": "<image>",
            "image_start_token": "<|image_start|>",
            "image_end_token": "<|image_end|>",
            "image_thumbnail_token": "<|img_thumbnail|>",
        },
    )
    img, patch = sizes["image_size"], 8
    # A 32-px image is 4x4 patches -> 2x2 tokens after the 2x unshuffle; larger ones split into tiles + thumbnail.
    processor = transformers.Lfm2VlProcessor(
        image_processor=transformers.Lfm2VlImageProcessor(
            encoder_patch_size=patch,
            tile_size=img,
            min_image_tokens=4,
            max_image_tokens=16,
            min_tiles=2,
            max_tiles=4,
            max_num_patches=64,
            size={"height": img, "width": img},
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        ),
        tokenizer=tokenizer,
        chat_template=LFM2_VL_CHAT_TEMPLATE,
    )
    tid = tokenizer.convert_tokens_to_ids
    text = _text_sizes(tokenizer, sizes)
    text.pop("head_dim")
    layers = text["num_hidden_layers"] = max(2, sizes["num_hidden_layers"])
    text_config = transformers.Lfm2Config(
        **text,
        layer_types=["conv" if i % 2 == 0 else "full_attention" for i in range(layers)],
        block_auto_adjust_ff_dim=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    vision = transformers.Siglip2VisionConfig(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_num_hidden_layers"],
        num_attention_heads=sizes["vision_num_attention_heads"],
        patch_size=patch,
        num_patches=64,
    )
    config = transformers.Lfm2VlConfig(
        text_config=text_config,
        vision_config=vision,
        image_token_id=tid("<image>"),
        projector_hidden_size=sizes["hidden_size"],
        downsample_factor=2,
        tie_word_embeddings=True,
    )
    model = transformers.Lfm2VlForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id]


def _qwen3_5(sizes: dict[str, int]):
    """Qwen3.5: Qwen3-VL's tower and processor; the language model interleaves Gated-DeltaNet linear-attention
    layers (``linear_attn.in_proj_qkv/z/b/a``, ``out_proj``; torch fallback kernels on CPU) with full attention."""
    import transformers

    tokenizer = _byte_level_tokenizer(
        list(_QWEN_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    tokenizer.add_tokens(["<think>", "</think>"])  # ordinary added tokens, as in Qwen's own tokenizer (not special)
    img, patch = sizes["image_size"], 16
    pixels = dict(
        size={"shortest_edge": img * img, "longest_edge": 4 * img * img},
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = transformers.Qwen3VLProcessor(
        image_processor=_image_processor("Qwen2VLImageProcessor", **pixels),
        tokenizer=tokenizer,
        video_processor=transformers.Qwen3VLVideoProcessor(**pixels),
        chat_template=axolotl_template("qwen3_5"),
    )
    tid = tokenizer.convert_tokens_to_ids
    text = _text_sizes(tokenizer, sizes)
    layers = text["num_hidden_layers"] = max(2, sizes["num_hidden_layers"])
    text.update(
        num_key_value_heads=max(1, sizes["num_attention_heads"] // 2),
        layer_types=["linear_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)],
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
    )
    rotated = int(text["head_dim"] * 0.25) // 2  # partial rotary 1/4; M-RoPE sections over its frequencies
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10_000_000.0,
        "partial_rotary_factor": 0.25,
        "mrope_section": [rotated - 2 * (rotated // 3), rotated // 3, rotated // 3],
        "mrope_interleaved": True,
    }
    vision = dict(
        depth=sizes["vision_num_hidden_layers"],
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_heads=sizes["vision_num_attention_heads"],
        out_hidden_size=sizes["hidden_size"],
        patch_size=patch,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=(img // patch) ** 2,
    )
    config = transformers.Qwen3_5Config(
        text_config=text,
        vision_config=vision,
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    model = transformers.Qwen3_5ForConditionalGeneration(config)
    return processor, model, [tokenizer.eos_token_id, tid("<|endoftext|>")]


_NEWER_BUILDERS = {
    "mistral3": _mistral3,
    "pixtral": _pixtral,
    "qwen3_vl": _qwen3_vl,
    "gemma3": _gemma3,
    "mllama": _mllama,
    "smolvlm": _smolvlm,
    "internvl": _internvl,
    "glm4v": _glm4v,
    "lfm2_vl": _lfm2_vl,
    "qwen3_5": _qwen3_5,
}


def _build_newer(family: str, out_dir: Path, seed: int, sizes: dict[str, int]) -> Path:
    import torch
    import transformers

    out = out_dir.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        processor, model, eos_ids = _NEWER_BUILDERS[family](sizes)
        model = model.to(torch.float32).eval()
    tok = processor.tokenizer
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos_ids, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _normalise_image_processor_type(out)
    meta = {"family": family, "seed": seed, "sizes": sizes, "builder": "mixtrain.testing.tiny_vlm"}
    (out / "tiny_vlm.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mixtrain.testing.tiny_vlm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", required=True, choices=FAMILIES, help="model family to build")
    ap.add_argument("--out", required=True, help="directory to write (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    args = ap.parse_args(argv)
    from mixtrain.models._fastimport import QUANTIZATION_LIBS, hiding

    # Random unquantized weights never need torchao or bitsandbytes, but transformers imports them when they
    # are installed, and torchao then prints "Failed to load ..._C_mxfp8..." for its CUDA-only kernels and
    # torch deprecation warnings: noise in `make demo`'s first step. This process is ours, so they are hidden
    # here only; whatever goes wrong in the build itself still prints.
    with hiding([n for n in QUANTIZATION_LIBS if n not in sys.modules]):
        path = build_tiny_vlm(args.family, args.out, seed=args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
