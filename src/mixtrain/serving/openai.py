"""OpenAI chat-completions wire format: the strict request schema and the exact response objects.

Why a schema of our own rather than the `openai` package's types: the server must refuse what it
cannot honour (n>1, tools, logprobs...) with an OpenAI-style error instead of silently ignoring it,
and unknown keys are refused (the project's extra="forbid" rule). OpenAI's own parameters that we
accept only at their neutral value are listed in NEUTRAL so clients that always send them still work.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# status code -> OpenAI error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """An expected refusal: becomes ``{"error": {"message", "type", "param", "code"}}`` with ``status``."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


Part = TextPart | ImagePart


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part]
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)  # OpenAI's default is 1; send 0 for greedy
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # OpenAI's seed is a 64-bit integer
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # accepted only at their neutral value (checked in validate_neutral)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None


NEUTRAL = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "store": (None, False),
    "parallel_tool_calls": (None, True),
}


def parse_request(payload: Any) -> ChatRequest:
    """Validate a decoded JSON body; schema problems are 422, semantic ones 400 (all OpenAI-style)."""
    if not isinstance(payload, dict):
        raise APIError(400, "the request body must be a JSON object", "invalid_request_body")
    try:
        req = ChatRequest.model_validate(payload)
    except ValidationError as err:
        loc, message = schema_problem(err)
        raise APIError(422, f"{loc}: {message}" if loc else message, "invalid_value", param=loc or None) from None
    for key, allowed in NEUTRAL.items():
        if getattr(req, key) not in allowed:
            raise APIError(
                400, f"{key}={getattr(req, key)!r} is not supported by this server", "unsupported_parameter", key
            )
    if req.n != 1:
        raise APIError(
            400, f"n={req.n} is not supported: this server returns one choice per request", "unsupported_parameter", "n"
        )
    if (
        req.max_tokens is not None
        and req.max_completion_tokens is not None
        and req.max_tokens != req.max_completion_tokens
    ):
        raise APIError(400, "max_tokens and max_completion_tokens disagree", "invalid_value", "max_tokens")
    if not any(m.role == "user" for m in req.messages):
        raise APIError(400, "messages need at least one user turn", "invalid_value", "messages")
    if req.messages[-1].role == "assistant":
        raise APIError(
            400,
            "the last message must not be an assistant turn (continuing a reply is not supported)",
            "invalid_value",
            "messages",
        )
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise APIError(400, "stop takes up to 4 non-empty strings", "invalid_value", "stop")
    return req


_MEMBERS = ("TextPart", "ImagePart")


def schema_problem(err: ValidationError) -> tuple[str, str]:
    """One OpenAI-style problem for a schema error: ``(param, message)``.

    Pydantic reports a value that fits no member of a union once per member ("(and 4 more
    problem(s))" for one mistake). Here a content part is judged only as the member its ``type``
    names, an error is dropped where a deeper one explains it, and what is left at one place reads
    "expected a string or a list, got null".
    """
    errors = err.errors()
    member = {}  # index of error -> the union member it belongs to
    for i, e in enumerate(errors):
        for x in e["loc"]:
            if x in _MEMBERS:
                member[i] = x
    typed_wrong = {member[i] for i, e in enumerate(errors) if i in member and e["loc"][-1] == "type"}
    if set(member.values()) - typed_wrong:  # the part's "type" picked a member: judge it as that one
        errors = [e for i, e in enumerate(errors) if member.get(i) not in typed_wrong]
    paths = [
        tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith(("str", "list[", *_MEMBERS))))
        for e in errors
    ]
    deepest = [i for i, p in enumerate(paths) if not any(len(q) > len(p) and q[: len(p)] == p for q in paths)]
    path = max((paths[i] for i in deepest), key=len)
    at = [errors[i] for i in deepest if paths[i] == path]
    loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in path).lstrip(".")
    got = at[0].get("input")
    shown = (
        "null"
        if got is None
        else {"str": "a string", "dict": "an object", "list": "an array"}.get(type(got).__name__, type(got).__name__)
    )
    if len(at) == 1 and at[0]["type"] != "literal_error":
        msg = at[0]["msg"]
        if at[0]["type"] == "model_type":
            msg = f"expected an object, got {shown}"
        return loc, msg
    expected = [e["msg"].removeprefix("Input should be ").removeprefix("a valid ") for e in at]
    if isinstance(got, str) and all(e["type"] == "literal_error" for e in at):
        shown = repr(got)
    return loc, f"expected {' or '.join(dict.fromkeys(expected))}, got {shown}"


def stop_list(req: ChatRequest) -> list[str]:
    return [req.stop] if isinstance(req.stop, str) else list(req.stop or [])


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def completion(
    cid: str, created: int, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int
) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": None,
    }


def chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict,
    finish: str | None = None,
    usage: dict | None = None,
    choices: bool = True,
) -> dict:
    out = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def model_card(name: str, parent: str | None, created: int | None = None) -> dict:
    return {
        "id": name,
        "object": "model",
        "created": created or int(time.time()),
        "owned_by": "mixtrain",
        "root": parent or name,
        "parent": parent,
    }
