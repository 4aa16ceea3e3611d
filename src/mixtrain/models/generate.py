"""Batched generation for vision-language models: many conversations, one ``generate`` call.

The one place that turns chat conversations with images into generated text. ``model run
--inputs-file``, evaluations and ``model serve`` all call it, so a prompt is rendered, padded,
generated and decoded the same way everywhere and greedy answers agree between them.

Why left padding: decoder-only generation appends to the right end of every row, so the rows of a
batch must end at the same column; transformers derives positions from the attention mask, so a
left-padded row generates what it would alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length" (max_new_tokens reached)


def model_inputs(processor, conversations: list[list[dict]], images: list[list]):
    """The processor's batch for ``conversations`` (left-padded, on the CPU): what ``generate`` is given.

    A template that writes BOS itself (Gemma 3, Llama 3.2 Vision, Mistral) gets no second one from the
    tokenizer, as in transformers' own chat-template tokenisation (what Axolotl trains on). Images go grouped
    per conversation when each has some: Gemma 3, Llama 3.2 Vision and SmolVLM2 processors check a batch that
    way (a flat list of 4 images beside 4 texts is "inconsistently sized"); the others flatten it themselves
    (same tensors as a flat list: checked for every family in tests/e2e/test_family_checks.py).

    ``enable_thinking=False``: a thinking template (Qwen3.5) then opens the answer after an empty think block,
    exactly as it wrote the training rows (``<think>\n\n</think>\n\n`` + answer), so the model answers directly
    instead of emitting ``</think>`` into the text; templates without the switch ignore it.
    """
    tok = processor.tokenizer
    texts = [
        processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False, enable_thinking=False)
        for conv in conversations
    ]
    flat = [img for row in images for img in row]
    bos = getattr(tok, "bos_token", None)
    own_bos = bool(bos) and all(t.startswith(bos) for t in texts)
    grouped = [list(row) for row in images] if all(images) else flat or None
    saved_side = tok.padding_side
    tok.padding_side = "left"
    try:
        return processor(images=grouped, text=texts, return_tensors="pt", padding=True, add_special_tokens=not own_bos)
    finally:
        tok.padding_side = saved_side


def generate_batch(
    model,
    processor,
    conversations: list[list[dict]],
    images: list[list[Any]],
    gen: dict,
    *,
    device: str,
    dtype,
    streamer=None,
    stopping_criteria=None,
) -> list[Generation]:
    """Generate one answer per conversation in a single batched ``model.generate``.

    ``conversations[i]`` is a chat message list in the processor's format; each ``{"type": "image"}``
    part consumes the next image of ``images[i]``. ``gen`` comes from ``generation_settings`` and may
    add ``stop`` (strings that end an answer) and ``seed`` (for sampling). ``streamer`` (a transformers
    streamer, one conversation only) receives tokens as they are generated — the server's SSE path.
    """
    import torch

    if len(conversations) != len(images):
        raise ValueError("one image list per conversation")
    if not conversations:
        return []
    tok = processor.tokenizer
    batch = model_inputs(processor, conversations, images)
    batch = batch.to(device)
    if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
        batch["pixel_values"] = batch["pixel_values"].to(dtype)

    stop = [s for s in (gen.get("stop") or []) if s]
    kwargs: dict[str, Any] = {"max_new_tokens": gen["max_new_tokens"], "do_sample": gen["do_sample"]}
    if gen["do_sample"]:
        kwargs.update(temperature=gen["temperature"], top_p=gen["top_p"])
        if gen.get("seed") is not None:
            torch.manual_seed(int(gen["seed"]))
    if stop:
        kwargs.update(stop_strings=stop, tokenizer=tok)
    if streamer is not None:
        if len(conversations) != 1:
            raise ValueError("a streamer takes one conversation at a time")
        kwargs["streamer"] = streamer
    if stopping_criteria is not None:
        kwargs["stopping_criteria"] = stopping_criteria
    eos = _eos_ids(model, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
    with torch.inference_mode():
        out = model.generate(**batch, **kwargs, pad_token_id=pad)
    prompt_len = batch["input_ids"].shape[1]
    prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
    return [
        _decode(tok, out[i, prompt_len:].tolist(), eos, pad, int(prompt_tokens[i]), gen["max_new_tokens"], stop)
        for i in range(len(conversations))
    ]


def _eos_ids(model, tok) -> set[int]:
    """EOS ids from the generation config (may be several, e.g. Qwen's <|im_end|> and <|endoftext|>)."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tok.eos_token_id
    ids = ids if isinstance(ids, (list, tuple)) else [ids]
    return {int(i) for i in ids if i is not None}


def _decode(
    tok, new: list[int], eos: set[int], pad: int, prompt_tokens: int, max_new: int, stop: list[str]
) -> Generation:
    end = next((i for i, t in enumerate(new) if t in eos), None)
    if end is not None:
        kept, used, reason = new[:end], end + 1, "stop"
    else:
        # A row that finished through a stop string is padded to the batch's longest row.
        while new and new[-1] == pad and len(new) < max_new:
            new = new[:-1]
        kept, used = new, len(new)
        reason = "length" if used >= max_new else "stop"
    text = tok.decode(kept, skip_special_tokens=True)
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    if cut >= 0:
        text, reason = text[:cut], "stop"
    return Generation(text=text.strip(), prompt_tokens=prompt_tokens, completion_tokens=used, finish_reason=reason)


PLACEHOLDER = re.compile(r"\s*<image>\s*")


def image_prompt(prompt: str, images: int = 1) -> list[dict]:
    """The single-turn conversation ``model run`` asks: the images, then the prompt — or, when the prompt
    holds one ``<image>`` per image (LLaVA-style text), each image where its placeholder stands, as the
    fine-tune trained it (vlm/rows.py)."""
    pieces = PLACEHOLDER.split(prompt)
    if images and len(pieces) - 1 == images:
        content: list[dict] = []
        for i, piece in enumerate(pieces):
            if i:
                content.append({"type": "image"})
            if piece.strip():
                content.append({"type": "text", "text": piece.strip()})
    else:
        content = [{"type": "image"} for _ in range(images)] + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def placeholders(prompt: str) -> int:
    return len(PLACEHOLDER.findall(prompt))
