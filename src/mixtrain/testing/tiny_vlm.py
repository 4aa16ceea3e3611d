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

FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")

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
_DEFAULT_IMAGE_SIZE = {"llava": 64, "llava_next": 64, "qwen2_vl": 112, "qwen2_5_vl": 112}
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
    if sizes["image_size"] % step:
        raise ValueError(f"image_size={sizes['image_size']} must be a multiple of {step} for {family}")
    for text, heads in (("hidden_size", "num_attention_heads"), ("vision_hidden_size", "vision_num_attention_heads")):
        if sizes[text] % sizes[heads]:
            raise ValueError(f"{text}={sizes[text]} must be divisible by {heads}={sizes[heads]}")
    if not family.startswith("llava") and (sizes["hidden_size"] // sizes["num_attention_heads"]) % 4:
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mixtrain.testing.tiny_vlm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", required=True, choices=FAMILIES, help="model family to build")
    ap.add_argument("--out", required=True, help="directory to write (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    args = ap.parse_args(argv)
    path = build_tiny_vlm(args.family, args.out, seed=args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
