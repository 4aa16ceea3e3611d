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

    for model_type, provider in (("smolvlm", _smolvlm), ("internvl", _internvl), ("mistral3", _mistral3)):
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


def _masked_labels(strategy, input_ids):
    """Labels = ids where the role mask keeps them, minus padding and every media token."""
    keep = strategy._mask_non_assistant_keep(input_ids)
    pad_id = getattr(strategy.processor.tokenizer, "pad_token_id", None)
    if pad_id is not None:
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
