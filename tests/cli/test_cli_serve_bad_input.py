"""`mixtrain model serve` refusals: one-line error, exit 1, before any model loads (no torch needed to refuse)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


@pytest.fixture
def registered(mix, tmp_path):
    (tmp_path / "fake-llava").mkdir()  # register reads only config.json: no weights needed to refuse
    (tmp_path / "fake-llava" / "config.json").write_text('{"model_type": "llava"}')
    mix("model", "register", "base", "--base_model", str(tmp_path / "fake-llava"), "--model_type", "llava", check=0)
    return tmp_path


CASES = [
    (["nope"], "model 'nope' not found"),
    (["base:7"], "has no version 7"),
    (["base:latest"], "bad model reference 'base:latest'"),
    (["base", "base"], "model 'base' is given twice"),
    (["base", "--host", "0.0.0.0"], "refusing to serve on 0.0.0.0 without an API key"),
    (["base", "--host", "192.168.1.20", "--api-key-secret", "MISSING_KEY"], "MISSING_KEY"),
    (["base", "--engine", "vllm"], "--engine vllm needs a CUDA GPU and the vllm package"),
    (["base", "--max-batch-size", "0"], "--max-batch-size: Input should be greater than or equal to 1"),
    (["base", "--max-tokens", "0"], "--max-tokens: Input should be greater than or equal to 1"),
    (["base", "--max-image-mb", "nan"], "--max-image-mb: Input should be a finite number"),
    # checked by the schema before a model is looked up, let alone loaded (was a traceback after loading)
    (["base", "--port", "99999"], "--port: Input should be less than or equal to 65535"),
    (["base", "--port", "-1"], "--port: Input should be greater than or equal to 0"),
    (
        ["nope", "--port", "70000", "--max-tokens", "0"],
        "--port: Input should be less than or equal to 65535; --max-tokens",
    ),
    (["base", "--port", "{busy}"], "cannot listen on 127.0.0.1:{busy}"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[c[1][:40] for c in CASES])
def test_serve_bad_input(mix, registered, args, message):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        res = mix("model", "serve", *[a.replace("{busy}", port) for a in args], timeout=120)
    message = message.replace("{busy}", port)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.startswith("Error: ") and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_an_unknown_engine_is_a_usage_error(mix, registered):
    res = mix("model", "serve", "base", "--engine", "tpu", timeout=120)
    assert res.returncode == 2 and "'tpu' is not one of 'auto', 'transformers', 'vllm'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_serve_help_imports_nothing_heavy(mix):
    code = (
        "import sys; from typer.testing import CliRunner; from mixtrain.cli.main import app; "
        "r = CliRunner().invoke(app, ['model', 'serve', '--help']); assert r.exit_code == 0, r.output; "
        "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'uvicorn', 'peft') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=mix.env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
