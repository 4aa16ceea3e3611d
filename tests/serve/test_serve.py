"""`mixtrain model serve` with the real `openai` client against the real server on a free loopback port.

One tiny LLaVA base with two random LoRA adapters (colour, shape) and the base itself (tiny), built and
registered once per module; the server is the real CLI child process. Run under the heavy lock.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import openai
import pytest
from openai import OpenAI

from harness import BIN, cli_env, prefetch
from harness.serve import ImageHost, Server, data_url, png, setup_models

PROMPT = "What colour is the shape?"
PIXEL_LIMIT = 128 * 128


@prefetch.job("serve_models", needs=("tiny_models",))
def _serve_models(tmp):
    """The home and its adapters (started early in the background when these tests are selected)."""
    root = tmp.mktemp("serve")
    env = cli_env(root / "home", base=prefetch.environ())
    setup_models(root, env, prefetch.result("tiny_models", tmp)["llava"])
    return root, env


@pytest.fixture(scope="module")
def serve_models(tmp_path_factory, tiny_models):
    return prefetch.result("serve_models", tmp_path_factory)


@pytest.fixture(scope="module")
def world(serve_models, tiny_models):
    root, env = serve_models
    images = {
        "red.png": png((220, 30, 30)),
        "blue.png": png((30, 60, 220)),
        "green.png": png((30, 170, 60)),
        "big.png": png(size=(200, 200)),
    }
    for name, data in images.items():
        (root / name).write_bytes(data)
    host = ImageHost(images)
    gate = threading.Event()  # /slow.png waits for it (graceful-shutdown test)
    asked = threading.Event()
    yield SimpleNamespace(
        root=root, env=env, host=host, images=images, gate=gate, asked=asked, base=tiny_models["llava"]
    )
    gate.set()
    host.close()


@pytest.fixture(scope="module")
def server(world):
    s = Server(
        world.env,
        "colour",
        "shape",
        "tiny",
        "--max-wait-ms",
        "50",
        "--max-images",
        "2",
        "--max-image-pixels",
        str(PIXEL_LIMIT),
        "--max-tokens",
        "64",
        "--max-body-mb",
        "1",
        "--allow-private-urls",  # the image host below is on loopback (refused by default: test_abuse.py)
        log=world.root / "server.log",
    )
    yield s
    assert s.stop() == 0
    assert "Traceback" not in s.log.read_text()


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url, api_key="not-needed", max_retries=0, timeout=300)


def image_msg(url: str, prompt: str = PROMPT) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}],
        }
    ]


def ask(client, model, url, prompt=PROMPT, max_tokens=8, **kw):
    return client.chat.completions.create(
        model=model, messages=image_msg(url, prompt), max_tokens=max_tokens, temperature=0, **kw
    )


# -- models --------------------------------------------------------------------------------------------------


def test_models_list_names_owner_and_parent(client, world):
    cards = {m.id: m.model_dump() for m in client.models.list()}
    assert set(cards) == {"colour", "shape", "tiny"}
    base = str(world.base)
    assert all(c["object"] == "model" and c["owned_by"] == "mixtrain" for c in cards.values())
    assert cards["colour"]["parent"] == base and cards["shape"]["parent"] == base and cards["tiny"]["parent"] is None
    assert client.models.retrieve("shape").id == "shape"


# -- answers -------------------------------------------------------------------------------------------------


def test_response_object_is_openai_shaped_and_adapters_answer_differently(client, world):
    answers = {}
    for model in ("colour", "shape", "tiny"):
        r = ask(client, model, data_url(world.images["red.png"]))
        assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == model and r.created > 0
        choice = r.choices[0]
        assert len(r.choices) == 1 and choice.index == 0 and choice.message.role == "assistant"
        assert choice.finish_reason in ("stop", "length")
        assert (
            r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
            and 0 < r.usage.completion_tokens <= 8
        )
        answers[model] = choice.message.content
    # three different weights behind one base in memory: each request got its own adapter (or none)
    assert len(set(answers.values())) == 3, answers
    assert ask(client, "colour:1", data_url(world.images["red.png"])).choices[0].message.content == answers["colour"]


@pytest.mark.parametrize("model", ["colour", "tiny"])
def test_greedy_answer_equals_model_run_and_http_url_equals_data_url(client, world, model):
    import subprocess

    by_data = ask(client, model, data_url(world.images["blue.png"])).choices[0].message.content
    by_http = ask(client, model, f"{world.host.base}/blue.png").choices[0].message.content
    run = subprocess.run(
        [
            str(BIN / "mixtrain"),
            "model",
            "run",
            model,
            "--image",
            str(world.root / "blue.png"),
            "--prompt",
            PROMPT,
            "--config",
            '{"max_new_tokens": 8}',
            "--json",
        ],
        check=False,
        env=world.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert by_data == by_http == json.loads(run.stdout)["generated_text"]


def test_streaming_sends_chunks_then_done_and_equals_the_plain_answer(client, server, world):
    url = data_url(world.images["green.png"])
    plain = ask(client, "shape", url, max_tokens=16)
    chunks = list(ask(client, "shape", url, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    body = {"model": "shape", "stream": True, "max_tokens": 4, "temperature": 0, "messages": image_msg(url)}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=300) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_stop_strings_cut_the_answer_streamed_or_not(client, world):
    url = data_url(world.images["red.png"])
    full = ask(client, "tiny", url, max_tokens=16).choices[0].message.content
    assert len(full) >= 4, full
    mid = len(full) // 2
    stop = full[mid : mid + 2]
    expected = full[: full.find(stop)].strip()
    cut = ask(client, "tiny", url, max_tokens=16, stop=[stop])
    assert cut.choices[0].message.content == expected and cut.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in ask(client, "tiny", url, max_tokens=16, stop=stop, stream=True)
        if c.choices
    )
    assert streamed == expected


def test_multi_turn_is_rendered_with_the_models_chat_template(client, world):
    import io

    from PIL import Image
    from transformers import AutoProcessor

    messages = [
        {"role": "system", "content": "Answer with one word."},
        *image_msg(data_url(world.images["red.png"])),
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "What shape is it?"},
    ]
    r = client.chat.completions.create(model="colour", messages=messages, max_tokens=4, temperature=0)
    proc = AutoProcessor.from_pretrained(str(world.base), use_fast=False)
    hf = [
        {"role": "system", "content": [{"type": "text", "text": "Answer with one word."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
        {"role": "user", "content": [{"type": "text", "text": "What shape is it?"}]},
    ]
    text = proc.apply_chat_template(hf, add_generation_prompt=True, tokenize=False)
    assert text.count("ASSISTANT:") == 2 and "red</s>" in text  # both turns, the answer closed by EOS
    ids = proc(
        images=[Image.open(io.BytesIO(world.images["red.png"])).convert("RGB")], text=[text], return_tensors="pt"
    )["input_ids"]
    assert r.usage.prompt_tokens == ids.shape[1]


def test_sixteen_concurrent_mixed_requests_equal_their_sequential_answers(client, server, world):
    models, colours = ("colour", "shape", "tiny"), ("red.png", "blue.png", "green.png")
    prompts = (PROMPT, "What shape is it?", "Describe the image.", "What is in the image? Answer with one word.")
    specs = [(models[i % 3], colours[(i // 3) % 3], prompts[i % 4]) for i in range(16)]

    def one(spec):
        model, image, prompt = spec
        return ask(client, model, data_url(world.images[image]), prompt).choices[0].message.content

    sequential = [one(s) for s in specs]
    before = httpx.get(f"{server.root}/health").json()["batches"]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(one, specs))
    health = httpx.get(f"{server.root}/health").json()
    assert concurrent == sequential
    assert health["batches"] - before < 16 and health["largest_batch"] > 1  # batching happened
    assert (
        len({(m, a) for (m, _, _), a in zip(specs, sequential, strict=False)}) > 3
    )  # the answers differ across the mix


# -- bad input -------------------------------------------------------------------------------------------------


def _body(**over):
    body = {"model": "tiny", "max_tokens": 4, "temperature": 0, "messages": image_msg(data_url(png(size=(32, 32))))}
    body.update(over)
    return body


def _with_image(url):
    return _body(messages=image_msg(url))


BAD = [
    # (id, body or raw bytes, status, error code)
    ("malformed-base64", lambda w: _with_image("data:image/png;base64,@@not-base64@@"), 400, "invalid_image"),
    ("not-an-image", lambda w: _with_image(data_url(b"hello, I am text")), 400, "invalid_image"),
    ("unknown-model", lambda w: _body(model="nope"), 404, "model_not_found"),
    ("unknown-version", lambda w: _body(model="tiny:9"), 404, "model_not_found"),
    ("empty-messages", lambda w: _body(messages=[]), 422, "invalid_value"),
    ("no-user-turn", lambda w: _body(messages=[{"role": "system", "content": "hi"}]), 400, "invalid_value"),
    ("image-url-404", lambda w: _with_image(f"{w.host.base}/missing.png"), 400, "invalid_image"),
    ("image-url-is-html", lambda w: _with_image(f"{w.host.base}/page.html"), 400, "invalid_image"),
    ("oversize-image", lambda w: _with_image(data_url(w.images["big.png"])), 413, "image_too_large"),
    ("oversize-image-by-url", lambda w: _with_image(f"{w.host.base}/big.png"), 413, "image_too_large"),
    (
        "too-many-images",
        lambda w: _body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": data_url(png(size=(8, 8)))}}] * 3,
                }
            ]
        ),
        413,
        "too_many_images",
    ),
    ("max-tokens-wrong-type", lambda w: _body(max_tokens="ten"), 422, "invalid_value"),
    ("messages-wrong-type", lambda w: _body(messages="hello"), 422, "invalid_value"),
    (
        "content-part-unknown-type",
        lambda w: _body(messages=[{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]),
        422,
        "invalid_value",
    ),
    ("n-2", lambda w: _body(n=2), 400, "unsupported_parameter"),
    ("negative-max-tokens", lambda w: _body(max_tokens=-1), 422, "invalid_value"),
    ("max-tokens-over-cap", lambda w: _body(max_tokens=65), 400, "invalid_value"),
    ("temperature-out-of-range", lambda w: _body(temperature=3), 422, "invalid_value"),
    ("unknown-field", lambda w: _body(beams=4), 422, "invalid_value"),
    ("unsupported-penalty", lambda w: _body(presence_penalty=1.0), 400, "unsupported_parameter"),
    ("local-path-refused", lambda w: _with_image(str(w.root / "red.png")), 400, "invalid_image_url"),
    (
        "image-in-assistant-turn",
        lambda w: _body(
            messages=[
                *image_msg(data_url(png())),
                {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": data_url(png())}}]},
                {"role": "user", "content": "and?"},
            ]
        ),
        400,
        "invalid_value",
    ),
    ("body-not-json", lambda w: b"{not json", 400, "invalid_json"),
    ("body-json-list", lambda w: b"[1, 2]", 400, "invalid_request_body"),
    ("body-too-large", lambda w: _body(user="x" * (1024 * 1024 + 10)), 413, "request_too_large"),
]


def test_bad_input_table_gets_openai_errors_and_the_server_stays_up(server, world):
    seen = []
    for name, make, _status, _code in BAD:
        payload = make(world)
        if isinstance(payload, bytes):
            r = httpx.post(
                f"{server.url}/chat/completions",
                content=payload,
                headers={"content-type": "application/json"},
                timeout=120,
            )
        else:
            r = httpx.post(f"{server.url}/chat/completions", json=payload, timeout=120)
        err = r.json().get("error") if r.headers.get("content-type", "").startswith("application/json") else None
        seen.append((name, r.status_code, err and err.get("code")))
        assert err is not None and set(err) == {"message", "type", "param", "code"} and err["message"], (
            name,
            r.text[:300],
        )
        assert "Traceback" not in r.text
    assert [(n, s, c) for n, s, c in seen] == [(n, s, c) for n, _, s, c in BAD]
    assert httpx.get(f"{server.url}/chat/completions").status_code == 405
    assert httpx.get(f"{server.url}/nothing/here").json()["error"]["code"] == "not_found"
    health = httpx.get(f"{server.root}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["pending"] == 0


def test_openai_client_raises_its_own_error_types(client):
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert nf.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], n=2)
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="tiny", messages=[])


# -- security and shutdown -------------------------------------------------------------------------------------


def test_api_key_from_a_secret_and_graceful_shutdown(world):
    import subprocess

    key = "sk-test-3f9c1e7a"
    subprocess.run(
        [str(BIN / "mixtrain"), "secret", "create", "SERVE_KEY"],
        input=key,
        env=world.env,
        check=True,
        capture_output=True,
        text=True,
    )
    s = Server(world.env, "tiny", "--api-key-secret", "SERVE_KEY", "--allow-private-urls", log=world.root / "auth.log")
    try:
        cmdline = open(f"/proc/{s.proc.pid}/cmdline", "rb").read().decode()
        assert "SERVE_KEY" in cmdline and key not in cmdline
        good = OpenAI(base_url=s.url, api_key=key, max_retries=0, timeout=300)
        for bad_key in ("wrong-key", key + "x"):
            with pytest.raises(openai.AuthenticationError) as info:
                OpenAI(base_url=s.url, api_key=bad_key, max_retries=0).chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "hi"}]
                )
            assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
        assert httpx.get(f"{s.url}/models").status_code == 401  # no header at all
        assert httpx.get(f"{s.root}/health").status_code == 200  # liveness stays open
        assert [m.id for m in good.models.list()] == ["tiny"]
        assert good.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        ).choices

        # Graceful: a request still fetching its image when SIGTERM arrives is answered, then the server exits 0.
        slow = png((10, 10, 10))
        world.host.files["slow.png"] = slow
        original = world.host.httpd.RequestHandlerClass.do_GET

        def gated(handler):
            if handler.path == "/slow.png":
                world.asked.set()
                world.gate.wait(120)
            original(handler)

        world.host.httpd.RequestHandlerClass.do_GET = gated
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", ask(good, "tiny", f"{world.host.base}/slow.png")))
        t.start()
        assert world.asked.wait(120)
        s.proc.send_signal(__import__("signal").SIGTERM)
        world.gate.set()
        t.join(300)
        assert result["r"].choices[0].message.content is not None
        assert s.proc.wait(120) == 0
        log = s.log.read_text() + "".join(s.stdout)
        assert key not in log and "Traceback" not in log
    finally:
        world.gate.set()
        s.stop()
