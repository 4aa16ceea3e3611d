"""FastAPI routes of the OpenAI-compatible server: auth, request limits, models, chat completions (JSON or SSE).

Every refusal is an OpenAI error object with its status (400 bad value, 401 auth, 404 unknown model
or route, 413 over a size limit, 422 schema) — never a traceback; an unexpected failure is a 500
``server_error`` whose details go to the server log only. The request body is read and parsed here
(not by FastAPI's binding) so its size is capped while reading and every error keeps OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mixtrain.errors import InvalidInput
from mixtrain.serving import openai as oa
from mixtrain.serving.batcher import Batcher, Job
from mixtrain.serving.pool import Base, Served

log = logging.getLogger("mixtrain.serve")


@dataclass
class Limits:
    """Per-request caps; each refusal names the limit and how to stay under it."""

    max_body_bytes: int = 20 * 2**20
    max_image_bytes: int = 10 * 2**20
    max_image_pixels: int = 25_000_000
    max_images: int = 8
    max_tokens: int = 4096
    default_max_tokens: int = 128  # like `mixtrain model run`
    download_timeout_s: float = 10.0


@dataclass
class ServeOptions:
    limits: Limits
    image_cache: Path
    api_key: str | None = None
    allow_local_files: bool = False


def create_app(bases: list[Base], batcher: Batcher, opts: ServeOptions) -> FastAPI:
    served = {s.name: s for b in bases for s in b.served}
    created = int(time.time())
    app = FastAPI(title="mixtrain model server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if opts.api_key is not None and request.url.path != "/health":
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), opts.api_key.encode()):
                return _error(
                    oa.APIError(
                        401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'", "invalid_api_key"
                    )
                )
        return await call_next(request)

    @app.exception_handler(oa.APIError)
    async def api_error(_request, err: oa.APIError):
        return _error(err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, err: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return _error(oa.APIError(err.status_code, str(err.detail), code))

    @app.exception_handler(Exception)
    async def unexpected(_request, err: Exception):
        log.exception("request failed")
        return _error(oa.APIError(500, f"internal server error ({type(err).__name__})", "internal_error"))

    @app.get("/health")
    async def health():
        sizes = batcher.batches
        return {
            "status": "ok",
            "models": sorted(served),
            "pending": batcher.pending,
            "batches": len(sizes),
            "largest_batch": max(sizes, default=0),
        }

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [_card(s, created) for s in served.values()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        return _card(_find(served, name), created)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = oa.parse_request(await _read_json(request, opts.limits.max_body_bytes))
        target = _find(served, req.model)
        max_tokens = (
            req.max_completion_tokens or req.max_tokens or min(opts.limits.default_max_tokens, opts.limits.max_tokens)
        )
        if max_tokens > opts.limits.max_tokens:
            raise oa.APIError(
                400,
                f"max_tokens={max_tokens} is over this server's limit of {opts.limits.max_tokens}",
                "invalid_value",
                "max_tokens",
            )
        conversation, refs = _conversation(req, opts.limits.max_images)
        images = [await run_in_threadpool(_load_image, ref, i, opts) for i, ref in enumerate(refs)]
        from mixtrain.models.inference import generation_settings

        gen = generation_settings({"max_new_tokens": max_tokens, "temperature": req.temperature, "top_p": req.top_p})
        gen["stop"] = oa.stop_list(req)
        loop = asyncio.get_running_loop()
        cid, name = oa.new_id(), req.model
        if not req.stream:
            job = Job(target, conversation, images, gen, req.seed, loop, loop.create_future())
            batcher.submit(job)
            g = await job.future
            return oa.completion(
                cid, int(time.time()), name, g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens
            )
        pieces: asyncio.Queue = asyncio.Queue()
        job = Job(
            target,
            conversation,
            images,
            gen,
            req.seed,
            loop,
            loop.create_future(),
            on_text=lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t),
        )
        job.future.add_done_callback(lambda _f: pieces.put_nowait(None))
        batcher.submit(job)
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(
            _sse(job, pieces, cid, name, gen["stop"], usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


async def _sse(job: Job, pieces: asyncio.Queue, cid: str, model: str, stops: list[str], include_usage: bool):
    """``chat.completion.chunk`` events as tokens arrive, then the finish chunk, usage (if asked) and [DONE].

    The streamed text is exactly the final text: text that might still turn into a stop string, and
    whitespace the final answer would strip, is held back until it is safe to send.
    """
    created = int(time.time())
    extra = {"usage": None} if include_usage else None

    def event(obj: dict) -> str:
        if extra is not None and "usage" not in obj:
            obj["usage"] = None
        return f"data: {json.dumps(obj)}\n\n"

    yield event(oa.chunk(cid, created, model, {"role": "assistant", "content": ""}))
    raw, sent = "", ""
    while (piece := await pieces.get()) is not None:
        raw += piece
        safe = _safe_prefix(raw, stops)
        if len(safe) > len(sent) and safe.startswith(sent):
            yield event(oa.chunk(cid, created, model, {"content": safe[len(sent) :]}))
            sent = safe
    try:
        g = job.future.result()
    except Exception as err:
        log.exception("streamed generation failed")
        yield f"data: {json.dumps(oa.APIError(500, f'generation failed ({type(err).__name__})', 'internal_error').body())}\n\n"
        yield "data: [DONE]\n\n"
        return
    if g.text.startswith(sent) and len(g.text) > len(sent):
        yield event(oa.chunk(cid, created, model, {"content": g.text[len(sent) :]}))
    yield event(oa.chunk(cid, created, model, {}, g.finish_reason))
    if include_usage:
        u = {
            "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens,
        }
        yield f"data: {json.dumps(oa.chunk(cid, created, model, {}, usage=u, choices=False))}\n\n"
    yield "data: [DONE]\n\n"


def _safe_prefix(raw: str, stops: list[str]) -> str:
    """The part of ``raw`` sure to be in the final answer: cut at a stop string, minus a tail that could
    still grow into one, minus whitespace the final answer strips."""
    text = raw.lstrip()
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    if cuts:
        return text[: min(cuts)].rstrip()
    tail = max((k for s in stops for k in range(1, min(len(s), len(text) + 1)) if text.endswith(s[:k])), default=0)
    return text[: len(text) - tail].rstrip()


def _error(err: oa.APIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def _card(s: Served, created: int) -> dict:
    return oa.model_card(s.name, s.base_model if s.adapter_path else None, created)


def _find(served: dict[str, Served], name: str) -> Served:
    """A served name, or ``name:version`` naming the served version."""
    if name in served:
        return served[name]
    base, _, version = name.rpartition(":")
    if base in served and version == str(served[base].version):
        return served[base]
    raise oa.APIError(
        404,
        f"The model '{name}' does not exist on this server (serving: {', '.join(sorted(served))})",
        "model_not_found",
        "model",
    )


async def _read_json(request: Request, limit: int):
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise oa.APIError(
            413, f"request body is {int(declared):,} bytes, over the limit of {limit:,}", "request_too_large"
        )
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise oa.APIError(413, f"request body is over the limit of {limit:,} bytes", "request_too_large")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise oa.APIError(400, f"the request body is not valid JSON ({err})", "invalid_json") from None


def _conversation(req: oa.ChatRequest, max_images: int) -> tuple[list[dict], list[str]]:
    """OpenAI messages -> a HF chat message list (an image part becomes {"type": "image"}) + image URLs in order."""
    conversation, refs = [], []
    for i, m in enumerate(req.messages):
        role = "system" if m.role == "developer" else m.role
        parts = [{"type": "text", "text": m.content}] if isinstance(m.content, str) else []
        for p in [] if isinstance(m.content, str) else m.content:
            if p.type == "text":
                parts.append({"type": "text", "text": p.text})
                continue
            if role != "user":
                raise oa.APIError(
                    400,
                    f"messages[{i}]: images are allowed in user turns only",
                    "invalid_value",
                    f"messages.{i}.content",
                )
            parts.append({"type": "image"})
            refs.append(p.image_url.url)
        conversation.append({"role": role, "content": parts})
    if len(refs) > max_images:
        raise oa.APIError(
            413, f"{len(refs)} images in one request, over the limit of {max_images}", "too_many_images", "messages"
        )
    return conversation, refs


def _load_image(ref: str, index: int, opts: ServeOptions):
    """Decode one image part (data URL, http(s) URL through the image cache, or a local file if allowed)."""
    from mixtrain.images import ImageTooLarge, image_from_data_url, load_image

    lim = opts.limits
    try:
        if ref[:5].lower() == "data:":
            return image_from_data_url(ref, max_bytes=lim.max_image_bytes, max_pixels=lim.max_image_pixels)
        if ref.split(":", 1)[0].lower() in ("http", "https"):
            return load_image(
                ref,
                opts.image_cache,
                timeout=lim.download_timeout_s,
                max_bytes=lim.max_image_bytes,
                max_pixels=lim.max_image_pixels,
            )
        if not opts.allow_local_files:
            raise oa.APIError(
                400,
                f"image {index + 1}: local file paths are disabled on this server",
                "invalid_image_url",
                "image_url",
            )
        return load_image(ref, opts.image_cache, max_pixels=lim.max_image_pixels)
    except ImageTooLarge as err:
        raise oa.APIError(413, f"image {index + 1}: {err}", "image_too_large", "image_url") from None
    except InvalidInput as err:
        raise oa.APIError(400, f"image {index + 1}: {err}", "invalid_image", "image_url") from None
