"""`mixtrain model serve` under abuse: the real CLI server on loopback, hostile requests as a table.

One server for the module (a tiny LLaVA "tiny" and a tiny Qwen2-VL "qwen", both 1,024-token
contexts), started with default security settings: no --allow-private-urls, so every URL that
resolves to loopback/private/link-local must be refused (the positive, allowed case is in
test_serve.py, whose server opts in). Each row is a defect found by an adversarial pass: before the
fix it was a 500, a hang, an accepted request or a leak. Run under the heavy lock (loads models).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx
import pytest
from serve_helpers import ImageHost, Server, data_url, env_for, png

SETUP = """
import sys
from mixtrain.client import MixClient
c = MixClient()
c.models.register_base("tiny", sys.argv[1], "llava")
c.models.register_base("qwen", sys.argv[2], "qwen2_vl")
"""
CONTEXT = 1024  # the tiny builders' max_position_embeddings


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("abuse")
    env = env_for(root / "home")
    llava, qwen = str(tiny_models["llava"]), str(tiny_models["qwen2_vl"])
    subprocess.run([sys.executable, "-c", SETUP, llava, qwen], env=env, check=True, timeout=600, capture_output=True)
    host = ImageHost({"red.png": png((220, 30, 30))})
    server = Server(env, "tiny", "qwen", "--max-wait-ms", "0", log=root / "server.log")
    yield SimpleNamespace(root=root, env=env, host=host, server=server, port=server.root.rsplit(":", 1)[1], llava=llava)
    host.close()
    # Shutdown is prompt and clean after everything below, poisoned requests included.
    assert server.stop(timeout=60) == 0
    log = server.log.read_text()
    assert "Traceback" not in log and str(root / "home") not in log, log[-3000:]


def chat(text="What colour is it?", image: str | None = None, model="tiny", **over) -> dict:
    content: list[dict] = [{"type": "text", "text": text}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": image}})
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
        **over,
    }


def flat_png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def words(n: int) -> str:
    return "red " * n


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# (id, how to send it, expected status, expected error code)
# A sender is (world) -> dict of httpx.request arguments; "json" bodies go as application/json.
IMG = data_url(png(size=(64, 64)))
CASES = [
    # -- context length: refused before any work, image tokens counted (was: 100k tokens accepted, 22 s+)
    ("prompt-250kb", lambda w: {"json": chat(words(62_500))}, 400, "context_length_exceeded"),
    ("prompt-fits-only-without-its-image", lambda w: {"json": chat(words(1_015), IMG)}, 400, "context_length_exceeded"),
    # -- SSRF: image URLs resolving to this machine, private or metadata addresses (was: fetched)
    ("url-loopback", lambda w: {"json": chat(image=f"{w.host.base}/red.png")}, 400, "invalid_image_url"),
    (
        "url-localhost",
        lambda w: {"json": chat(image=w.host.base.replace("127.0.0.1", "localhost") + "/red.png")},
        400,
        "invalid_image_url",
    ),
    ("url-ipv6-loopback", lambda w: {"json": chat(image=f"http://[::1]:{w.port}/health")}, 400, "invalid_image_url"),
    (
        "url-decimal-ip",
        lambda w: {"json": chat(image=w.host.base.replace("127.0.0.1", "2130706433") + "/red.png")},
        400,
        "invalid_image_url",
    ),
    (
        "url-cloud-metadata",
        lambda w: {"json": chat(image="http://169.254.169.254/latest/meta-data/")},
        400,
        "invalid_image_url",
    ),
    ("url-private-net", lambda w: {"json": chat(image="http://10.0.0.1/x.png")}, 400, "invalid_image_url"),
    ("url-unspecified", lambda w: {"json": chat(image=f"http://0.0.0.0:{w.port}/health")}, 400, "invalid_image_url"),
    (
        "url-ipv4-mapped-ipv6",
        lambda w: {"json": chat(image=f"http://[::ffff:127.0.0.1]:{w.port}/health")},
        400,
        "invalid_image_url",
    ),
    # -- browser-driven requests: DNS rebinding and simple (preflight-free) cross-site POSTs (was: answered)
    (
        "host-rebound-get",
        lambda w: {"method": "GET", "path": "/v1/models", "headers": {"host": "attacker.example"}},
        400,
        "invalid_host",
    ),
    (
        "host-rebound-post",
        lambda w: {"json": chat(), "headers": {"host": f"attacker.example:{w.port}"}},
        400,
        "invalid_host",
    ),
    (
        "body-as-text-plain",
        lambda w: {"content": json.dumps(chat()), "headers": {"content-type": "text/plain"}},
        415,
        "invalid_content_type",
    ),
    (
        "body-as-form",
        lambda w: {"content": b"model=tiny", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        415,
        "invalid_content_type",
    ),
    ("body-without-content-type", lambda w: {"content": json.dumps(chat()).encode()}, 415, "invalid_content_type"),
    # -- 500s (or a hang) that are the client's mistake
    (
        "qwen-image-5000-to-1",
        lambda w: {"json": chat(image=data_url(flat_png(5000, 1)), model="qwen")},
        400,
        "invalid_value",
    ),
    ("seed-2-pow-70", lambda w: {"json": chat(seed=2**70, temperature=1)}, 422, "invalid_value"),
    (
        "json-nested-100000-deep",
        lambda w: {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
    ),
    ("literal-image-token-with-an-image", lambda w: {"json": chat("what is <image>?", IMG)}, 400, "invalid_value"),
    (
        "literal-qwen-image-pad-with-an-image",
        lambda w: {"json": chat("<|image_pad|>?", IMG, model="qwen")},
        400,
        "invalid_value",
    ),
    # -- one OpenAI-shaped message, not pydantic's "(and 4 more problem(s))"
    (
        "image-url-as-bare-string",
        lambda w: {
            "json": {
                "model": "tiny",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": IMG}]}],
            }
        },
        422,
        "invalid_value",
    ),
    (
        "content-null",
        lambda w: {"json": {"model": "tiny", "messages": [{"role": "user", "content": None}]}},
        422,
        "invalid_value",
    ),
]


def send(world, spec: dict) -> httpx.Response:
    spec = dict(spec)
    method, path = spec.pop("method", "POST"), spec.pop("path", "/v1/chat/completions")
    return httpx.request(method, world.server.root + path, timeout=60, **spec)


@pytest.mark.parametrize("make,status,code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_abuse_gets_one_openai_error(world, make, status, code):
    r = send(world, make(world))
    assert r.headers.get("content-type", "").startswith("application/json"), r.text[:300]
    err = r.json().get("error") or {}
    assert (r.status_code, err.get("code")) == (status, code), r.text[:400]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    message = err["message"]
    assert "more problem" not in message and "Traceback" not in message and "Errno" not in message
    assert str(world.root) not in message and "cache" not in message  # no internal paths
    if code == "invalid_image_url":
        assert "could not fetch the image" in message


def test_the_server_still_answers_and_reports_no_stuck_request(world):
    r = httpx.post(f"{world.server.url}/chat/completions", json=chat(image=IMG), timeout=120)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
    for name in ("127.0.0.1", "localhost", "[::1]"):  # every loopback spelling of the bound address works
        assert httpx.get(f"{world.server.root}/v1/models", headers={"host": f"{name}:{world.port}"}).status_code == 200
    health = httpx.get(f"{world.server.root}/health").json()
    assert health["pending"] == 0


def test_max_tokens_is_capped_to_what_fits_the_context(world):
    """A prompt that fits leaves room for fewer tokens than asked: the answer stops at the context."""
    r = httpx.post(f"{world.server.url}/chat/completions", json=chat(words(1_015), max_tokens=500), timeout=120)
    assert r.status_code == 200, r.text[:300]
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] < CONTEXT and usage["prompt_tokens"] + usage["completion_tokens"] <= CONTEXT


def _wait_idle(world) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        health = httpx.get(f"{world.server.root}/health").json()
        if health["pending"] == 0:
            return health
        time.sleep(0.05)
    raise AssertionError("a request is still pending 120 s after its client left")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_a_client_that_goes_away_stops_its_generation(world, stream):
    """Abandon a 1,000-token request after its start: the server stops generating it (CPU-s printed)."""
    body = chat("Tell me a long story.", max_tokens=1000, stream=stream)
    before, cpu0 = httpx.get(f"{world.server.root}/health").json(), _cpu_seconds(world.server.proc.pid)
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", int(world.port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
        )
        if stream:
            got, end = b"", time.monotonic() + 60  # headers and the first chunk may arrive in separate reads
            while b"chat.completion.chunk" not in got and time.monotonic() < end:
                got += sock.recv(65536)
            assert b"chat.completion.chunk" in got  # generation has started
        else:
            time.sleep(0.5)
    after = _wait_idle(world)
    spent = _cpu_seconds(world.server.proc.pid) - cpu0
    generated = after["completion_tokens"] - before["completion_tokens"]
    print(f"\nabandoned {'stream' if stream else 'plain'} request: {generated} tokens, {spent:.2f} CPU-s")
    assert after["cancelled"] == before["cancelled"] + 1
    assert generated < 1000  # stopped early (a full answer of this tiny model runs to the 1,000 tokens)


def test_a_redirect_to_a_private_address_is_refused_on_that_hop():
    """The address rule applies to every hop: here 127.0.0.1 plays the public host, 127.0.0.2 the private one."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mixtrain.serving.fetch import FetchRefused, fetch

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{self.server.server_address[1]}/secret")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    import threading

    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    images = ImageHost({"red.png": png()})
    only_one = lambda address: address == "127.0.0.1"  # noqa: E731
    try:
        assert fetch(f"{images.base}/red.png", allow_private=False, max_bytes=2**20, timeout=10, allowed=only_one)
        with pytest.raises(FetchRefused) as info:
            fetch(
                f"http://127.0.0.1:{httpd.server_address[1]}/go",
                allow_private=False,
                max_bytes=2**20,
                timeout=10,
                allowed=only_one,
            )
        assert "private" in info.value.reason and "127.0.0.2" not in info.value.reason
        with pytest.raises(FetchRefused) as info:  # the default rule: loopback is not public
            fetch(f"{images.base}/red.png", allow_private=False, max_bytes=2**20, timeout=10)
        assert info.value.code == "invalid_image_url"
    finally:
        httpd.shutdown()
        images.close()


def test_a_generation_that_raises_fails_its_request_alone(world):
    """Poison that reaches the worker (StopIteration, which an asyncio future refuses) fails that request with
    an error, the next request is answered, and close() returns — the real batcher and model, in-process."""
    import asyncio

    from mixtrain.serving import pool
    from mixtrain.serving.batcher import Batcher, GenerationFailed, Job

    bases = pool.plan([{"name": "tiny", "version": 1, "base_model": world.llava, "adapter_path": None}])
    pool.load(bases)
    batcher = Batcher(bases, max_batch_size=4, max_wait_ms=0)
    served = bases[0].served[0]
    image = __import__("PIL.Image", fromlist=["Image"]).new("RGB", (64, 64))
    gen = {"max_new_tokens": 3, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "stop": []}

    async def run():
        loop = asyncio.get_running_loop()
        poisoned = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "<image> twice"}]}]
        good = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
        jobs = [Job(served, conv, [image], gen, None, loop, loop.create_future()) for conv in (poisoned, good)]
        for job in jobs:
            batcher.submit(job)
        return await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs), return_exceptions=True), 120)

    try:
        bad, ok = asyncio.run(run())
    finally:
        batcher.close(timeout=30)
    assert isinstance(bad, GenerationFailed) and isinstance(bad.__cause__, StopIteration)
    assert not isinstance(ok, BaseException) and ok.completion_tokens > 0
    assert batcher.pending == 0 and not any(t.is_alive() for t in batcher._threads)
