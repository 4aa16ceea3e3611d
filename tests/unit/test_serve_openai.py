"""The server's request schema and SSE hold-back, without a model (the HTTP behaviour is tested in tests/serve)."""

from __future__ import annotations

import pytest

from mixtrain.errors import InvalidInput
from mixtrain.serving import openai as oa
from mixtrain.serving.handler import conversation_of as _conversation
from mixtrain.serving.handler import safe_prefix as _safe_prefix
from mixtrain.serving.spec import ServeSpec, parse_model_ref, parse_spec

USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    "payload,status,needle",
    [
        ([], 400, "JSON object"),
        ({"messages": [USER]}, 422, "model: Field required"),
        ({"model": "m", "messages": []}, 422, "messages"),
        ({"model": "m", "messages": [USER], "n": 3}, 400, "n=3"),
        ({"model": "m", "messages": [USER], "max_tokens": 0}, 422, "max_tokens"),
        ({"model": "m", "messages": [USER], "temperature": "hot"}, 422, "temperature"),
        ({"model": "m", "messages": [USER], "top_p": 0}, 422, "top_p"),
        ({"model": "m", "messages": [USER], "beams": 4}, 422, "beams"),
        ({"model": "m", "messages": [USER], "presence_penalty": 0.5}, 400, "presence_penalty"),
        ({"model": "m", "messages": [{"role": "system", "content": "x"}]}, 400, "user turn"),
        ({"model": "m", "messages": [USER, {"role": "assistant", "content": "x"}]}, 400, "last message"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, 422, "role"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            422,
            "messages[0].content[0].type",
        ),
        # one OpenAI-shaped problem, not pydantic's one-per-union-member "(and 4 more problem(s))"
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://x/a.png"}]}],
            },
            422,
            "messages[0].content[0].image_url: expected an object, got a string",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": None}]},
            422,
            "messages[0].content: expected string or list, got null",
        ),
        ({"model": "m", "messages": [USER], "seed": 2**70}, 422, "seed"),
        ({"model": "m", "messages": [USER], "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"model": "m", "messages": [USER], "max_tokens": 5, "max_completion_tokens": 6}, 400, "disagree"),
    ],
)
def test_bad_requests(payload, status, needle):
    with pytest.raises(oa.APIError) as info:
        oa.parse_request(payload)
    assert info.value.status == status and needle in info.value.message
    body = info.value.body()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error"


def test_neutral_openai_parameters_are_accepted():
    req = oa.parse_request(
        {
            "model": "m",
            "messages": [USER],
            "presence_penalty": 0,
            "logprobs": False,
            "user": "u",
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": "\n",
        }
    )
    assert req.stream and oa.stop_list(req) == ["\n"]


def test_conversation_maps_image_parts_in_order_and_developer_to_system():
    req = oa.parse_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image_url", "image_url": {"url": "data:1"}},
                        {"type": "image_url", "image_url": {"url": "data:2"}},
                    ],
                },
            ],
        }
    )
    conv, refs = _conversation(req, max_images=2)
    assert conv == [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "image"}]},
    ]
    assert refs == ["data:1", "data:2"]
    with pytest.raises(oa.APIError) as info:
        _conversation(req, max_images=1)
    assert info.value.status == 413


def test_safe_prefix_holds_back_possible_stop_strings_and_whitespace():
    assert _safe_prefix(" red cir", ["circle"]) == "red"
    assert _safe_prefix(" red circ", ["circle", "x"]) == "red"
    assert _safe_prefix(" red circle and more", ["circle"]) == "red"
    assert _safe_prefix(" red ci ", ["circle"]) == "red ci"
    assert _safe_prefix(" red ", []) == "red"
    assert _safe_prefix("abc", []) == "abc"


def test_no_schema_message_lists_more_problems():
    for payload in (
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]},
        {"model": "m", "messages": [{"role": "user", "content": None}]},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
    ):
        with pytest.raises(oa.APIError) as info:
            oa.parse_request(payload)
        assert "more problem" not in info.value.message and info.value.param.startswith("messages[0].content")


def test_serve_spec_checks():
    assert parse_spec({"models": ["m"]}).limits().max_tokens == 4096
    ServeSpec(models=["m"], host="0.0.0.0", api_key_secret="KEY")
    ServeSpec(models=["m"], host="0.0.0.0", insecure=True)
    for bad, needle in [
        ({"host": "0.0.0.0"}, "without an API key"),
        ({"port": 99999}, "--port: Input should be less than or equal to 65535"),
        ({"port": -1}, "--port: Input should be greater than or equal to 0"),
        ({"engine": "tpu"}, "--engine: Input should be 'auto', 'transformers' or 'vllm'"),
        ({"max_batch_size": 0}, "--max-batch-size"),
        ({"max_body_mb": float("nan")}, "--max-body-mb"),
        ({"models": ["m:latest"]}, "bad model reference 'm:latest'"),
        ({"models": []}, "at least 1 item"),
    ]:
        with pytest.raises(InvalidInput) as info:
            parse_spec({"models": ["m"], **bad})
        assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert parse_model_ref("m:3") == ("m", 3) and parse_model_ref("m") == ("m", None)
