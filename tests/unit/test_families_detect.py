"""Newer families are detected from config.json alone; a variant (Pixtral) is a row told apart by its vision tower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixtrain.vlm import configure, families


def _model(tmp_path: Path, config: dict) -> str:
    d = tmp_path / "m"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config))
    return str(d)


@pytest.mark.parametrize(
    "hf_type, family",
    [
        ("qwen3_vl", "qwen3_vl"),
        ("gemma3", "gemma3"),
        ("mllama", "mllama"),
        ("smolvlm", "smolvlm"),
        ("internvl", "internvl"),
        ("mistral3", "mistral3"),
    ],
)
def test_each_newer_family_is_detected_from_its_model_type(tmp_path, hf_type, family):
    notes: list[str] = []
    fam, _ = families.resolve("llava", _model(tmp_path, {"model_type": hf_type}), notes.append)
    assert fam.name == family and fam.supported
    assert len(notes) == 1 and f"using the {family} handling" in notes[0]


def test_a_llava_with_a_pixtral_tower_is_pixtral_not_llava_mistral(tmp_path):
    """Treated as LLaVA-Mistral it would write <image>, which Pixtral's processor never expands (0 image tokens)."""
    cfg = {"model_type": "llava", "vision_config": {"model_type": "pixtral"}, "text_config": {"model_type": "mistral"}}
    notes: list[str] = []
    fam, _ = families.resolve("llava", _model(tmp_path, cfg), notes.append)
    assert fam.name == "pixtral" and fam.chat_template == "pixtral" and fam.template_file is None
    assert any("using the pixtral handling" in n for n in notes)
    assert not any("[INST] ... [/INST] conversation format" in n for n in notes)  # not the llava_mistral path


def test_a_plain_llava_stays_llava(tmp_path):
    cfg = {"model_type": "llava", "vision_config": {"model_type": "clip_vision_model"}}
    fam, _ = families.resolve("llava", _model(tmp_path, cfg), lambda m: None)
    assert fam.name == "llava"


def test_mistral3_trains_with_a_template_that_has_no_date_of_today():
    settings = configure.chat_template_settings(families.get_family("mistral3"))
    assert settings["chat_template"] == "jinja"
    text = settings["chat_template_jinja"]
    assert "strftime_now(" not in text and 'set today = "2025-03-17"' in text


def test_cross_attention_layers_are_in_the_llama_vision_target():
    import re

    target = re.compile(families.get_family("mllama").lora_target)
    assert target.fullmatch("model.language_model.layers.3.cross_attn.q_proj")
    assert target.fullmatch("model.language_model.layers.2.self_attn.o_proj")
    assert not target.fullmatch("model.vision_model.transformer.layers.0.self_attn.q_proj")


def test_unknown_model_lists_each_supported_type_once(tmp_path):
    from mixtrain.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        families.resolve("llava", _model(tmp_path, {"model_type": "blip-2"}), lambda m: None)
    listed = str(err.value).split("one of: ", 1)[1]
    assert listed.count("llava,") == 1 and "gemma3" in listed and "mistral3" in listed


@pytest.mark.parametrize("hf_type", ["glm4v_moe", "gemma4", "llama4"])
def test_families_not_yet_proven_are_refused_with_their_reason(tmp_path, hf_type):
    from mixtrain.errors import InvalidInput
    from mixtrain.vlm.recipe import check_family
    from mixtrain.vlm.spec import parse_spec

    fam, _ = families.resolve("llava", _model(tmp_path, {"model_type": hf_type}), lambda m: None)
    assert fam.name == hf_type and not fam.supported
    spec = parse_spec({"dataset_name": "d", "output_model_name": "m", "model_type": "llava"})
    with pytest.raises(InvalidInput) as err:
        check_family(fam, spec)
    assert fam.unsupported_reason in str(err.value) and "qwen3_vl" in str(err.value)


def test_glm_and_lfm2_targets_cover_their_own_layer_kinds():
    import re

    glm = re.compile(families.get_family("glm4v").lora_target)
    assert glm.fullmatch("model.language_model.layers.0.mlp.gate_up_proj")  # GLM's fused MLP
    assert not glm.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    lfm = re.compile(families.get_family("lfm2_vl").lora_target)
    for name in ("conv.in_proj", "conv.out_proj", "self_attn.out_proj", "feed_forward.w2"):
        assert lfm.fullmatch(f"model.language_model.layers.3.{name}"), name
    assert not lfm.fullmatch("model.multi_modal_projector.linear_1")


def test_glm_45v_moe_is_told_apart_from_dense_glm_41v(tmp_path):
    dense, _ = families.resolve("glm4v", _model(tmp_path / "a", {"model_type": "glm4v"}), lambda m: None)
    moe, _ = families.resolve("glm4v", _model(tmp_path / "b", {"model_type": "glm4v_moe"}), lambda m: None)
    assert dense.supported and dense.name == "glm4v"
    assert not moe.supported and "3-D" in moe.unsupported_reason
