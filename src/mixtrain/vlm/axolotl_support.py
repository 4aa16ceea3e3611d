"""Our processing strategies for families whose Axolotl 0.19 strategy crashes or trains on the prompt.

Registered through ``axolotl.model_support.register_model_support`` — Axolotl consults that registry (by
the base model's ``model_type``) before its built-in chains — in the training process only
(``axolotl_main``), so no Axolotl file is patched and the CLI never imports Axolotl.

* SmolVLM2: Axolotl's ``SmolVLM2ProcessingStrategy`` reads ``tokenizer.additional_special_tokens_ids``,
  which transformers 5 tokenizers no longer have (AttributeError before the first step); it also declares no
  role boundaries, so every prompt token would carry loss. Ours finds the image token by name and masks all
  but the assistant turns ("Assistant:" … ``<end_of_utterance>``, the closing token trained).

* InternVL (HF format): Axolotl's ``InternVLProcessingStrategy`` wants ``processor.image_ids``, which the
  transformers 5 processor does not have ("'image_ids' missing from InternVL Processor"), and declares no
  role boundaries. Ours masks ``processor.image_token_ids`` (<IMG_CONTEXT>, <img>, </img>) and trains the
  ChatML assistant turns (``<|im_start|>assistant\n`` … ``<|im_end|>``).

* Mistral Small 3.x in transformers' format (PixtralProcessor + a tokenizers tokenizer): Axolotl's own
  Mistral3 strategy is for the mistral_common processor only, and our fixed-date template is a ``jinja``
  one, which no built-in strategy claims (prompt trained). Ours: the v7-tekken boundaries
  ([SYSTEM_PROMPT], [INST], [/INST] … EOS) and [IMG], [IMG_BREAK], [IMG_END] masked.

* GLM-4.1V / GLM-4.5V: Axolotl's ``Glm4vProcessingStrategy`` declares no role boundaries ("unverified"), so
  the prompt is trained too. Ours trains ``<|assistant|>\n`` … ``<|endoftext|>`` (our template,
  templates/glm4v.jinja, closes each answer with GLM's EOS) and masks the image/video markers. GLM's pad token
  is its EOS: padding lies outside every assistant span, so the role mask drops it and the closing EOS stays.

* LFM2-VL: Axolotl 0.19 has no strategy at all (the base one trains every token but the image token). Ours
  trains the ChatML assistant turns (``<|im_start|>assistant\n`` … ``<|im_end|>``) and masks every token the
  processor adds for an image (<image>, <|image_start|>, <|image_end|>, <|img_thumbnail|>, <|img_row_R_col_C|>).

Each strategy masks the tokens the processor inserts for an image (they are never targets).
"""

from __future__ import annotations

_REGISTERED = False


def register() -> None:
    """Register our strategies with Axolotl (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from axolotl.model_support import ModelProfile, ModelStrategyOverrides, register_model_support
    from axolotl.model_support.base import ModelSupport
    from axolotl.model_support.templates import IMAGE_TEXT_TO_TEXT

    for model_type, provider in (
        ("smolvlm", _smolvlm),
        ("internvl", _internvl),
        ("mistral3", _mistral3),
        ("glm4v", _glm4v),
        ("lfm2_vl", _lfm2_vl),
    ):
        support = type(
            f"Mixtrain{model_type.title()}Support",
            (ModelSupport,),
            {
                "__doc__": f"mixtrain's processing strategy for {model_type} (see mixtrain.vlm.axolotl_support).",
                "model_types": (model_type,),
                "profile": ModelProfile(
                    family=IMAGE_TEXT_TO_TEXT,
                    strategies=ModelStrategyOverrides(processing_strategy_cls=provider),
                ),
            },
        )
        register_model_support(support)
    _REGISTERED = True


def _media_ids(tokenizer, tokens) -> set[int]:
    unk = getattr(tokenizer, "unk_token_id", None)
    ids = {tokenizer.convert_tokens_to_ids(t) for t in tokens if t}
    return {i for i in ids if isinstance(i, int) and i != unk}


def _smolvlm() -> type:
    from axolotl.processing_strategies import ProcessingStrategy, RoleBoundary, _encode_markers

    class SmolVLMStrategy(ProcessingStrategy):
        """SmolVLM2: "User:" / "Assistant:" turns closed by <end_of_utterance>; image, tile and wrapper tokens masked."""

        def __init__(self, processor, *args, **kwargs):
            super().__init__(processor, *args, **kwargs)
            tok = processor.tokenizer
            self.image_token = processor.image_token
            self.image_token_id = tok.convert_tokens_to_ids(self.image_token)
            grid = [t for t in tok.get_vocab() if t.startswith("<row_") and t.endswith(">")]
            self.media_ids = _media_ids(
                tok, [processor.image_token, processor.fake_image_token, processor.global_image_token, *grid]
            )

        def _build_role_boundaries(self) -> list:
            tok = self.processor.tokenizer
            end = _encode_markers(tok, [getattr(self.processor, "end_of_utterance_token", "<end_of_utterance>")])
            if not end:
                return []
            out = []
            for role, marker in (("system", "System:"), ("user", "User:"), ("assistant", "Assistant:")):
                start = _encode_markers(tok, [marker])
                if start:
                    out.append(RoleBoundary(role=role, start_tokens=start[0], end_tokens=end[0]))
            return out

        def process_labels(self, input_ids):
            return _masked_labels(self, input_ids)

    return SmolVLMStrategy


def _internvl() -> type:
    from axolotl.processing_strategies import ProcessingStrategy, RoleBoundary, _encode_markers

    class InternVLStrategy(ProcessingStrategy):
        """InternVL: ChatML turns; <IMG_CONTEXT>, <img>, </img> and <video> masked."""

        def __init__(self, processor, *args, **kwargs):
            super().__init__(processor, *args, **kwargs)
            tok = processor.tokenizer
            self.image_token = processor.image_token
            self.image_token_id = processor.image_token_id
            self.media_ids = {int(i) for i in processor.image_token_ids if i is not None} | _media_ids(
                tok, [getattr(processor, "video_token", None)]
            )

        def _build_role_boundaries(self) -> list:
            tok = self.processor.tokenizer
            end = _encode_markers(tok, ["<|im_end|>"])
            if not end:
                return []
            out = []
            for role in ("system", "user", "assistant"):
                start = _encode_markers(tok, [f"<|im_start|>{role}\n"])
                if start:
                    out.append(RoleBoundary(role=role, start_tokens=start[0], end_tokens=end[0]))
            return out

        def process_labels(self, input_ids):
            return _masked_labels(self, input_ids)

    return InternVLStrategy


def _chatml_boundaries(tok, roles=("system", "user", "assistant"), end="<|im_end|>") -> list:
    from axolotl.processing_strategies import RoleBoundary, _encode_markers

    close = _encode_markers(tok, [end])
    if not close:
        return []
    out = []
    for role in roles:
        start = _encode_markers(tok, [f"<|im_start|>{role}\n"])
        if start:
            out.append(RoleBoundary(role=role, start_tokens=start[0], end_tokens=close[0]))
    return out


def _glm4v() -> type:
    from axolotl.processing_strategies import ProcessingStrategy, RoleBoundary, _encode_markers

    class Glm4vStrategy(ProcessingStrategy):
        """GLM-4.1V / 4.5V: ``<|assistant|>\n`` answer ``<|endoftext|>`` trained; image and video markers masked."""

        def __init__(self, processor, *args, **kwargs):
            super().__init__(processor, *args, **kwargs)
            tok = processor.tokenizer
            self.image_token = processor.image_token
            self.image_token_id = processor.image_token_id
            self.media_ids = _media_ids(
                tok,
                [
                    processor.image_token,
                    getattr(processor, "video_token", None),
                    "<|begin_of_image|>",
                    "<|end_of_image|>",
                    "<|begin_of_video|>",
                    "<|end_of_video|>",
                ],
            )

        def _build_role_boundaries(self) -> list:
            # Only the assistant turn is declared: GLM's user and system turns have no closing token of their own
            # (the next role token ends them), and undeclared text is never trained.
            tok = self.processor.tokenizer
            start = _encode_markers(tok, ["<|assistant|>\n"])
            end = _encode_markers(tok, [tok.eos_token or "<|endoftext|>"])
            if not (start and end):
                return []
            return [RoleBoundary(role="assistant", start_tokens=start[0], end_tokens=end[0])]

        def process_labels(self, input_ids):
            return _masked_labels(self, input_ids, pad_outside_turns=True)

    return Glm4vStrategy


def _lfm2_vl() -> type:
    from axolotl.processing_strategies import ProcessingStrategy

    class Lfm2VlStrategy(ProcessingStrategy):
        """LFM2-VL: ChatML turns; <image>, its start/end, thumbnail and tile-position tokens masked."""

        def __init__(self, processor, *args, **kwargs):
            super().__init__(processor, *args, **kwargs)
            tok = processor.tokenizer
            self.image_token = processor.image_token
            self.image_token_id = processor.image_token_id
            tiles = [t for t in tok.get_vocab() if t.startswith("<|img_row_") and t.endswith("|>")]
            self.media_ids = _media_ids(
                tok,
                [
                    processor.image_token,
                    processor.image_start_token,
                    processor.image_end_token,
                    processor.image_thumbnail_token,
                    *tiles,
                ],
            )

        def __call__(self, examples: list[dict]) -> list[dict]:
            return _decoded_with_pil(super().__call__(examples))

        def _build_role_boundaries(self) -> list:
            return _chatml_boundaries(self.processor.tokenizer)

        def process_labels(self, input_ids):
            return _masked_labels(self, input_ids)

    return Lfm2VlStrategy


def _decoded_with_pil(examples: list[dict]) -> list[dict]:
    """Image parts given by path/URL replaced by the decoded image (PIL), in place.

    LFM2-VL's image processor exists only as a torchvision one, and handed a path it decodes the file with
    ``torchvision.io`` — compiled ops that a CPU torch beside the index's CUDA torchvision does not have
    (scripts/torchvision_cpu_compat.py). Decoded images take torchvision's pure-tensor path on any machine.
    """
    from axolotl.processing_strategies import load_image

    for example in examples:
        for message in example.get("messages") or []:
            for part in message.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "image" and "image" not in part:
                    ref = part.pop("path", None) or part.pop("url", None)
                    if ref is not None:
                        part["image"] = load_image(ref)
    return examples


def _masked_labels(strategy, input_ids, *, pad_outside_turns: bool = False):
    """Labels = ids where the role mask keeps them, minus padding and every media token.

    ``pad_outside_turns``: the pad token is also the turn's closing token (GLM): padding is never inside an
    assistant span, so the role mask alone drops it — masking the pad id would drop the closing token too.
    """
    keep = strategy._mask_non_assistant_keep(input_ids)
    pad_id = getattr(strategy.processor.tokenizer, "pad_token_id", None)
    if pad_id is not None and not (pad_outside_turns and not strategy.train_on_inputs):
        keep = keep & (input_ids != pad_id)
    for media in strategy.media_ids:
        keep = keep & (input_ids != media)
    labels = input_ids.clone()
    labels[~keep] = -100
    return labels


def _mistral3() -> type:
    from axolotl.processing_strategies import MistralV7TekkenProcessingStrategy

    class Mistral3Strategy(MistralV7TekkenProcessingStrategy):
        """Mistral Small 3.x (HF format): v7-tekken turns; [IMG], [IMG_BREAK], [IMG_END] masked."""

        def __init__(self, processor, *args, **kwargs):
            super().__init__(processor, *args, **kwargs)
            self.media_ids = {int(i) for i in processor.image_token_ids if i is not None}

        def process_labels(self, input_ids):
            return _masked_labels(self, input_ids)

    return Mistral3Strategy
