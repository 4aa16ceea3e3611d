"""GPU serving (marker `gpu`): `--engine vllm` with a real `vllm serve` child, and the transformers engine on CUDA.

Skipped without CUDA (and, for vLLM, without the vllm package). The CPU suite golden-tests the vLLM
command line (tests/unit/test_serve_vllm.py); this runs it.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from harness import BIN, cli_env
from harness.serve import Server, data_url, png, setup_models

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True
    )
    return out.stdout.strip() == "True"


CUDA = _cuda()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("gpu-serve")
    env = cli_env(root / "home")
    setup_models(root, env, tiny_models["llava"])
    return root, env


def _ask(url, model, key=None):
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key=key or "none", max_retries=0, timeout=600)
    msg = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url(png())}},
                {"type": "text", "text": "What colour is the shape?"},
            ],
        }
    ]
    return client.chat.completions.create(model=model, messages=msg, max_tokens=8, temperature=0)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_transformers_engine_on_cuda(world):
    root, env = world
    s = Server(env, "colour", "tiny", "--engine", "transformers", log=root / "cuda.log")
    try:
        r = _ask(s.url, "colour")
        assert r.choices[0].message.content is not None and r.usage.completion_tokens > 0
    finally:
        assert s.stop() == 0


@pytest.mark.skipif(not CUDA or importlib.util.find_spec("vllm") is None, reason="needs a CUDA GPU and vllm")
def test_vllm_engine_serves_the_adapters_and_the_base(world):
    import socket

    root, env = world
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [str(BIN / "mixtrain"), "model", "serve", "colour", "shape", "tiny", "--engine", "vllm", "--port", str(port)],
        env=env,
        stdout=open(root / "vllm.out", "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            assert proc.poll() is None, (root / "vllm.out").read_text()[-4000:]
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(2)
        cards = {m["id"]: m for m in httpx.get(f"{url}/models").json()["data"]}
        assert {"colour", "shape", "tiny"} <= set(cards)
        for model in ("colour", "shape", "tiny"):
            assert _ask(url, model).choices[0].message.content is not None
    finally:
        proc.terminate()
        proc.wait(120)
