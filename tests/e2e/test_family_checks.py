"""Checks that catch a family's silent mistakes, without training, on every newer family's tiny build:

* labels: on one prepared row, as Axolotl's own multimodal collator labels it for the YAML our fine-tune
  writes, only the answer and the turn's closing token carry loss (tests/e2e/family_labels.py);
* LoRA coverage: PEFT, given the family's target, adapts every Linear of the language model and nothing else;
* a row whose image gets no image tokens is what the preflight refuses (the old Pixtral mistake).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Families proven end to end here (the original four are gated by test_finetune_families.py), with the token
# that closes an assistant turn in each (it must carry loss, or the model never learns to stop) and the
# prefix of its language model's modules (what the LoRA target must cover, and nothing outside it).
GATED = ("qwen3_vl", "gemma3", "mllama", "smolvlm", "internvl", "mistral3", "pixtral", "glm4v", "lfm2_vl", "qwen3_5")
CLOSE = {
    "qwen3_vl": "<|im_end|>",
    "gemma3": "<end_of_turn>",
    "mllama": "<|eot_id|>",
    "smolvlm": "<end_of_utterance>",
    "internvl": "<|im_end|>",
    "mistral3": "</s>",
    "pixtral": "</s>",
    "glm4v": "<|endoftext|>",
    "lfm2_vl": "<|im_end|>",
    "qwen3_5": "<|im_end|>",
}
# Qwen3.5's template writes the answer of the last turn after an (empty) think block: part of the assistant turn,
# and what the model must produce after its generation prompt's "<think>\n\n".
ANSWER_PREFIX = {"qwen3_5": "<think>\n\n</think>\n\n"}
LANGUAGE_MODEL = dict.fromkeys(GATED, "model.language_model.") | {"smolvlm": "model.text_model."}
# Image tokens in the text for the gate's 64x64 image: Qwen3-VL 2x2 merged 16-px patches; Gemma 3 its pooled
# soft tokens (not the begin-of-image marker); Llama 3.2 Vision one <|image|> (features enter by cross-attention).
# Pixtral: 4x4 [IMG] rows, each closed by [IMG_BREAK] / [IMG_END]; Mistral 3 merges 2x2 patches first.
# InternVL: 4 tiles + a thumbnail, 4 <IMG_CONTEXT> each, inside <img> … </img>.
# SmolVLM2: 2x2 tiles + a global view, 4 <image> tokens each, each tile framed by its own marker tokens.
# GLM-4.1V: 2x2 merged 8-px patches. LFM2-VL: 8x8 patches unshuffled 2x2 into one 4x4 tile (no split at this size).
IMAGE_TOKENS = {
    "qwen3_vl": 4,
    "gemma3": 4,
    "mllama": 1,
    "smolvlm": 20,
    "internvl": 22,
    "mistral3": 6,
    "pixtral": 20,
    "glm4v": 4,
    "lfm2_vl": 16,
    "qwen3_5": 4,
}
PROMPT = "What colour is the shape?"


@pytest.fixture(scope="session")
def labels(newer_models, tmp_path_factory) -> dict:
    """Axolotl's own labels for one prepared row of every family (one Axolotl import for all)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("labels")
    Image.new("RGB", (80, 48), (200, 30, 30)).save(root / "red.png")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("family_labels.py")), str(root / "red.png"), str(root)]
        + [f"{f}={p}" for f, p in newer_models.items()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"[gate] labels of {len(newer_models)} families: {time.monotonic() - t0:.1f}s")
    out = {}
    for path in root.glob("*.labels.json"):
        rec = json.loads(path.read_text())
        out[rec["family"]] = rec
    assert out, (proc.stdout[-2000:], proc.stderr[-3000:])
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_only_the_answer_and_its_closing_token_carry_loss(labels, family):
    assert family in labels, sorted(labels)
    rec = labels[family]
    assert "error" not in rec, rec.get("error")
    expected = ANSWER_PREFIX.get(family, "") + "red circle" + CLOSE[family]
    assert rec["trained_text"].strip() == expected, (rec["strategy"], rec["row_text"])


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_lora_target_covers_the_language_model_and_nothing_else(newer_models, family):
    """PEFT itself applies the family's target: every Linear of the language model gets LoRA, nothing else."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from mixtrain.vlm.families import get_family

    model = AutoModelForImageTextToText.from_pretrained(newer_models[family], dtype=torch.float32)
    linears = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    wanted = {n for n in linears if n.startswith(LANGUAGE_MODEL[family])}
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=get_family(family).lora_target))
    hit = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert wanted and hit == wanted, (sorted(wanted - hit), sorted(hit - wanted))


@pytest.mark.e2e
def test_rows_whose_image_got_no_tokens_fail_the_preflight(newer_models):
    """The old Pixtral mistake: a template writing <image> for a processor that expands [IMG] gives 0 image
    tokens — the preflight (what a dry run runs) must refuse, not report "0/0/0" and say OK."""
    from transformers import AutoProcessor

    from mixtrain.vlm import configure, measure
    from mixtrain.vlm.prepare import to_messages

    image = Path(newer_models["pixtral"]) / "probe.png"
    _image_of(image)
    rows = [to_messages(str(image), PROMPT, "red")] * 2
    proc = AutoProcessor.from_pretrained(newer_models["pixtral"], use_fast=False)
    wrong = measure.measure(proc, (configure.TEMPLATES / "llava_mistral.jinja").read_text(), rows, workers=1)
    assert wrong.image_tokens == [0, 0] and wrong.images == [
        1,
        1,
    ]  # what the preflight refuses (rows with images, 0 tokens)
    right = measure.measure(proc, None, rows, workers=1)  # the pixtral family's template: the model's own
    assert right.image_tokens == [IMAGE_TOKENS["pixtral"]] * 2 and right.per_image == [IMAGE_TOKENS["pixtral"]] * 2


@pytest.mark.e2e
@pytest.mark.parametrize("family", GATED)
def test_preflight_counts_images_of_several_shapes_as_the_processor_does(newer_models, family, tmp_path, monkeypatch):
    """The preflight gives every row the processor's own token count on images of several shapes and sizes
    (tiling, aspect ratio) — on a small table (processor on each row) and on a large one (size-only length pass,
    checked on a sample; where it disagrees — tile or boundary markers it does not count — every row goes
    through the processor instead, so the figures stay exact)."""
    from PIL import Image
    from transformers import AutoProcessor

    from mixtrain.vlm import configure, measure
    from mixtrain.vlm.families import get_family
    from mixtrain.vlm.prepare import to_messages

    shapes = [(64, 64), (80, 48), (30, 90), (200, 120), (17, 33)]
    rows = []
    for w, h in shapes:
        Image.new("RGB", (w, h), (200, 30, 30)).save(tmp_path / f"{w}x{h}.png")
        rows.append(to_messages(str(tmp_path / f"{w}x{h}.png"), PROMPT, "red"))
    proc = AutoProcessor.from_pretrained(newer_models[family], use_fast=False)
    template = configure.chat_template_settings(get_family(family)).get("chat_template_jinja")
    exact = measure.measure(proc, template, rows, workers=1)
    monkeypatch.setattr(measure, "SAMPLE", 1)  # a "large" table: length pass over every row, 1 row checked
    fast = measure.measure(proc, template, rows, workers=1)
    assert exact.method == "processor on every row" and fast.method != exact.method
    assert fast.lengths == exact.lengths and fast.image_tokens == exact.image_tokens, fast.method
    if family not in ("gemma3", "mllama"):  # fixed tokens per image there; elsewhere the shape changes the count
        assert len(set(exact.image_tokens)) > 1, exact.image_tokens
    for row, count in zip(rows, exact.image_tokens, strict=True):
        batch = proc(
            text=[proc.apply_chat_template(row["messages"][:1], chat_template=template, tokenize=False)],
            images=[Image.open(row["messages"][0]["content"][0]["path"]).convert("RGB")],
            return_mm_token_type_ids=True,
        )
        if "mm_token_type_ids" in batch:  # the processor's own marking of an image's tokens
            assert count == sum(1 for t in batch["mm_token_type_ids"][0] if int(t) == 1), family


def _image_of(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)


@pytest.mark.e2e
def test_a_batch_holds_each_conversation_as_it_is_alone(tiny_models, newer_models):
    """What batched generation (model run / serve / eval) feeds the model, for every family: each row of the
    batch equals that conversation on its own (images grouped per conversation, left padding), with one BOS."""
    from PIL import Image
    from transformers import AutoProcessor

    from mixtrain.models.generate import image_prompt, model_inputs

    images = [Image.new("RGB", size, colour) for size, colour in (((64, 64), (200, 0, 0)), ((90, 40), (0, 200, 0)))]
    convs = [image_prompt(q) for q in ("What colour?", "Describe the image in one word.")]
    for family, path in {**tiny_models, **newer_models}.items():
        proc = AutoProcessor.from_pretrained(path, use_fast=False)
        batch = model_inputs(proc, convs, [[im] for im in images])
        bos = proc.tokenizer.bos_token_id
        for k, (conv, im) in enumerate(zip(convs, images, strict=True)):
            alone = model_inputs(proc, [conv], [[im]])["input_ids"][0].tolist()
            assert batch["input_ids"][k, -len(alone) :].tolist() == alone, family
            assert bos is None or alone[:2].count(bos) <= 1, (family, alone[:4])
