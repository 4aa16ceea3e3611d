"""The memory estimator on real 7B architectures, built from their published config.json values on the
meta device (no weights, no download), against published figures. Needs torch (not a unit test), no training.

Published figure: ms-swift's example examples/train/multimodal/caption.sh is headed "# 22GiB" for
Qwen/Qwen2-VL-7B-Instruct, LoRA rank 8, bf16, per-device batch 1, max_length 2048, MAX_PIXELS=1003520,
frozen ViT, gradient checkpointing on (swift's default), one GPU.
"""

from __future__ import annotations

import pytest

from mixtrain.vlm import families
from mixtrain.vlm.memory import architecture, estimate, verdict


def qwen2_vl_7b():
    from transformers import Qwen2VLConfig

    # Qwen/Qwen2-VL-7B-Instruct config.json
    return Qwen2VLConfig(
        text_config={
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "max_position_embeddings": 32768,
            "rope_theta": 1e6,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 3584,
            "mlp_ratio": 4,
            "num_heads": 16,
            "in_chans": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        tie_word_embeddings=False,
    )


def llava_15_7b():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    # llava-hf/llava-1.5-7b-hf config.json: CLIP ViT-L/14-336 + Vicuna-7B (Llama-2 shape, vocab 32064)
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    )
    text = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32064,
    )
    return LlavaConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=32000, vision_feature_layer=-2
    )


@pytest.fixture(scope="module")
def qwen():
    return architecture(qwen2_vl_7b(), families.get_family("qwen2_vl").lora_target, 8)


def test_parameter_counts_match_the_published_sizes(qwen):
    assert 8.25e9 < qwen.params < 8.35e9  # Qwen2-VL-7B: 8.29B parameters (model card)
    llava = architecture(llava_15_7b(), families.get_family("llava").lora_target, 8)
    assert 7.0e9 < llava.params < 7.1e9  # llava-1.5-7b-hf: 7.06B
    # LoRA r8 on q,k,v,o,gate,up,down of every decoder layer: r·(in+out) summed
    per_layer = 8 * ((3584 + 3584) + (3584 + 512) * 2 + (3584 + 3584) + 3 * (3584 + 18944))
    assert qwen.lora_params == 28 * per_layer


def test_qwen2_vl_7b_lora_r8_batch1_is_close_to_ms_swift(qwen):
    est = estimate(qwen, lora_rank=8, micro_batch=1, seq_len=2048, dtype_bytes=2, gradient_checkpointing=True)
    print("estimate:", est.lines(), f"total {est.total:.1f} GiB vs published 22 GiB")
    assert 19.0 <= est.total <= 25.0  # within ~15% of 22 GiB
    assert verdict(est, 80)[0] == "fits" and verdict(est, 16)[1] is True


def test_each_lever_moves_the_estimate_the_right_way(qwen):
    base = estimate(qwen, lora_rank=8, micro_batch=1, seq_len=2048)
    assert estimate(qwen, lora_rank=8, micro_batch=4, seq_len=2048).total > base.total
    assert (
        estimate(qwen, lora_rank=8, micro_batch=1, seq_len=2048, gradient_checkpointing=False).parts["activations"]
        > 10 * base.parts["activations"]
    )
    z3 = estimate(qwen, lora_rank=8, micro_batch=1, seq_len=2048, zero_stage=3, processes=4)
    assert abs(z3.parts["weights"] - base.parts["weights"] / 4) < 0.01
    assert estimate(qwen, lora_rank=64, micro_batch=1, seq_len=2048).parts["lora+optimizer"] == pytest.approx(
        8 * base.parts["lora+optimizer"]
    )


def _mode_estimate(adapter: str, train_vision: str = "none"):
    """Qwen2-VL-7B, bf16, batch 1 × 2048 tokens, in one training mode, counted as the preflight counts it."""
    from mixtrain.vlm import configure
    from mixtrain.vlm.spec import parse_spec

    fam = families.get_family("qwen2_vl")
    lora = {} if adapter == "full" else {"lora_r": 8}
    spec = parse_spec(
        {"dataset_name": "d", "output_model_name": "m", "adapter": adapter, "train_vision": train_vision, **lora}
    )
    arch = architecture(
        qwen2_vl_7b(),
        configure.lora_target(spec, fam),
        8,
        full_trained=configure.full_trained(spec, fam),
        unquantized=configure.unquantized(fam),
    )
    return arch, estimate(arch, lora_rank=8, micro_batch=1, seq_len=2048, adapter=adapter)


def test_each_training_mode_moves_the_estimate_the_right_way():
    from mixtrain.vlm.memory import remedies

    arch, lora = _mode_estimate("lora")
    _, qlora = _mode_estimate("qlora")
    full_arch, full = _mode_estimate("full")
    # QLoRA: the language model's Linear weights (6.5 of 8.3B parameters) at 4.127 bits instead of 16.
    assert 6.0e9 < arch.quantized_params < 7.2e9
    assert qlora.parts["weights"] == pytest.approx(
        lora.parts["weights"] - arch.quantized_params * (2 - 4.127 / 8) / 2**30
    )
    assert qlora.parts["weights"] < 0.5 * lora.parts["weights"]
    assert qlora.parts["lora+optimizer"] == lora.parts["lora+optimizer"]
    # Full fine-tuning: every language-model weight keeps a gradient and two AdamW moments; no LoRA.
    assert 7.0e9 < full_arch.full_params < 7.7e9  # Qwen2-VL-7B's language model + head, not its 0.68B ViT
    assert "lora+optimizer" not in full.parts
    assert full.parts["full-trained+optimizer"] == pytest.approx(full_arch.full_params * (2 + 8) / 2**30)
    assert full.total > lora.total + 60 > qlora.total + 60
    # The verdict moves with them: one 80 GiB GPU fits LoRA, not full fine-tuning; 16 GiB fits QLoRA only.
    assert verdict(lora, 80)[0] == "fits" and verdict(full, 80)[1] is True
    assert verdict(lora, 16)[1] is True and verdict(qlora, 16)[1] is False
    assert "--adapter lora or qlora" in remedies("full") and "--adapter qlora" in remedies("lora")
    # --train_vision: none < projector < LoRA on the tower too < the tower in full.
    totals = [_mode_estimate("lora", tv)[1].total for tv in ("none", "projector", "lora", "full")]
    assert totals == sorted(totals) and len(set(totals)) == 4
