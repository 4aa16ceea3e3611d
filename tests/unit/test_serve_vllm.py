"""`--engine vllm`: the `vllm serve` command line (golden), rank rounding, one base per server, key kept out of argv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixtrain.errors import InvalidInput
from mixtrain.serving import pool, vllm

GOLDEN = Path(__file__).parent / "golden_serve" / "vllm_serve_two_adapters_and_base.json"


def _adapter(root: Path, name: str, r: int, rank_pattern: dict | None = None, template: bool = False) -> str:
    d = root / name
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(
        json.dumps({"r": r, "lora_alpha": 2 * r, "rank_pattern": rank_pattern or {}})
    )
    if template:
        (d / "chat_template.jinja").write_text("{{ messages }}")
    return str(d)


def _info(name, version, base, adapter):
    return {"name": name, "version": version, "base_model": base, "adapter_path": adapter, "model_type": "llava"}


def test_golden_command_two_adapters_and_base(tmp_path):
    base = "llava-hf/llava-1.5-7b-hf"
    a = _adapter(tmp_path, "colour", 16, template=True)
    b = _adapter(tmp_path, "shape", 8, rank_pattern={"q_proj": 24})
    bases = pool.plan([_info("colour", 3, base, a), _info("shape", 1, base, b), _info("llava-base", 1, base, "")])
    cmd = vllm.vllm_command(bases, "127.0.0.1", 8000, max_batch_size=8)
    got = [part.replace(str(tmp_path), "{tmp}") for part in cmd]
    assert got == json.loads(GOLDEN.read_text())


def test_rank_rounds_up_to_a_value_vllm_accepts(tmp_path):
    bases = pool.plan([_info("x", 1, "/base", _adapter(tmp_path, "x", 12))])
    cmd = vllm.vllm_command(bases, "0.0.0.0", 9000, max_batch_size=4, allow_local_files=True)
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16"
    assert cmd[-2:] == ["--allowed-local-media-path", "/"]
    assert "--served-model-name" not in cmd  # no base served by name


def test_rank_over_vllm_maximum_is_an_error(tmp_path):
    bases = pool.plan([_info("x", 1, "/base", _adapter(tmp_path, "x", 1024))])
    with pytest.raises(InvalidInput, match="rank 1024"):
        vllm.vllm_command(bases, "127.0.0.1", 8000, max_batch_size=8)


def test_one_base_per_vllm_server(tmp_path):
    bases = pool.plan(
        [_info("x", 1, "/base-a", _adapter(tmp_path, "x", 8)), _info("y", 1, "/base-b", _adapter(tmp_path, "y", 8))]
    )
    assert len(bases) == 2
    with pytest.raises(InvalidInput, match="one base model per server"):
        vllm.vllm_command(bases, "127.0.0.1", 8000, max_batch_size=8)


def test_plan_refuses_duplicates_and_missing_adapter_files(tmp_path):
    a = _adapter(tmp_path, "x", 8)
    with pytest.raises(InvalidInput, match="given twice"):
        pool.plan([_info("x", 1, "/b", a), _info("x", 2, "/b", a)])
    with pytest.raises(InvalidInput, match="adapter files of y v1 are missing"):
        pool.plan([_info("y", 1, "/b", str(tmp_path / "gone"))])


def test_api_key_reaches_the_child_by_environment_only(tmp_path):
    """A real child process: the key is in its environment, not in its argument list."""
    script = tmp_path / "fake-vllm"
    script.write_text('#!/bin/sh\necho "ARGS=$*"\necho "KEY=$VLLM_API_KEY"\n')
    script.chmod(0o755)
    out = tmp_path / "out.txt"
    import subprocess
    import sys

    code = (
        "import sys; from mixtrain.serving.vllm import run_vllm; "
        f"sys.exit(run_vllm([{str(script)!r}, 'serve', '/base'], 's3cr3t-key'))"
    )
    with open(out, "w") as fh:
        rc = subprocess.run([sys.executable, "-c", code], check=False, stdout=fh, timeout=60).returncode
    text = out.read_text()
    assert rc == 0
    assert "ARGS=serve /base" in text and "KEY=s3cr3t-key" in text
    assert "s3cr3t-key" not in text.split("KEY=")[0]


def _weights(d: Path, names: list[str]) -> None:
    """A real safetensors file (written by the safetensors library) holding ``names``."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({n: np.zeros((2, 2), dtype=np.float32) for n in names}, str(d / "adapter_model.safetensors"))


LM_LORA = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"


@pytest.mark.parametrize(
    "extra,flag",
    [
        ([], False),  # language-model LoRA only: vLLM's default
        (["base_model.model.model.vision_tower.encoder.layers.0.self_attn.q_proj.lora_A.weight"], True),
        (["base_model.model.model.visual.blocks.0.attn.qkv.lora_B.weight"], True),  # Qwen's tower
        (["base_model.model.model.multi_modal_projector.linear_1.weight"], True),  # --train_vision projector
        (["base_model.model.model.visual.merger.mlp.0.weight"], True),  # Qwen's merger
        (["base_model.model.model.connector.modality_projection.proj.weight"], True),  # SmolVLM's connector
    ],
)
def test_tower_connector_lora_flag_follows_the_adapters_weights(tmp_path, extra, flag):
    """--train_vision adapters carry tower/projector weights: vLLM must be told to apply them."""
    a = _adapter(tmp_path, "x", 8)
    _weights(Path(a), [LM_LORA, *extra])
    cmd = vllm.vllm_command(pool.plan([_info("x", 1, "/base", a)]), "127.0.0.1", 8000, max_batch_size=4)
    assert ("--enable-tower-connector-lora" in cmd) is flag
    # one such adapter among several is enough
    b = _adapter(tmp_path, "y", 8)
    _weights(Path(b), [LM_LORA])
    both = pool.plan([_info("y", 1, "/base", b), _info("x", 1, "/base", a)])
    assert ("--enable-tower-connector-lora" in vllm.vllm_command(both, "127.0.0.1", 8000, max_batch_size=4)) is flag


def test_full_finetune_is_served_as_its_own_model(tmp_path):
    """--adapter full registers whole weights: vLLM serves that folder by name, with no LoRA arguments."""
    d = tmp_path / "full"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llava"}')
    (d / "model.safetensors").write_bytes(b"")
    bases = pool.plan([_info("whole", 2, "llava-hf/llava-1.5-7b-hf", str(d))])
    assert [b.path for b in bases] == [str(d)] and bases[0].served[0].adapter_path is None
    cmd = vllm.vllm_command(bases, "127.0.0.1", 8000, max_batch_size=4)
    assert cmd[:3] == ["vllm", "serve", str(d)]
    assert cmd[cmd.index("--served-model-name") + 1] == "whole" and "--enable-lora" not in cmd
