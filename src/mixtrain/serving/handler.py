"""The chat-completions handler: parse → prepare (images, context, settings) → serve (JSON) or stream (SSE).

The route in app.py is three lines that call ``ChatHandler.create`` (vLLM's api_router / serving
split). Each step refuses what it cannot honour with an OpenAI error before any generation work:

- the body is read under its byte cap and parsed with a depth-safe decoder;
- images are decoded under their limits; URLs go through ``fetch.py`` (no private addresses unless
  ``--allow-private-urls``, every failure "could not fetch the image");
- the prompt is rendered and tokenised — images included — by a private copy of the served
  processor (the batcher's worker uses the original; a fast tokenizer must not be shared across
  threads), so an over-long prompt is a 400 ``context_length_exceeded`` and ``max_tokens`` is capped
  to what fits; a processor that refuses an input (a 5000:1 image on Qwen2-VL) is a 400, not a 500;
- while the answer is generated the client is watched: if it goes away the job is cancelled and
  the worker stops that row at the next token.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from mixtrain.errors import InvalidInput
from mixtrain.serving import openai as oa
from mixtrain.serving.batcher import Batcher, Job
from mixtrain.serving.pool import Served
from mixtrain.serving.spec import Limits

log = logging.getLogger("mixtrain.serve")


@dataclass
class ServeOptions:
    limits: Limits
    image_cache: Path
    api_key: str | None = None
    allow_local_files: bool = False
    allow_private_urls: bool = False
    bound_host: str = "127.0.0.1"


@dataclass
class Prepared:
    """A request ready for the batcher."""

    req: oa.ChatRequest
    target: Served
    conversation: list[dict]
    images: list
    gen: dict
    prompt_tokens: int


class ChatHandler:
    def __init__(self, served: dict[str, Served], batcher: Batcher, opts: ServeOptions):
        self.served, self.batcher, self.opts = served, batcher, opts
        self._counters: dict[str, tuple[Any, threading.Lock]] = {}
        self._counters_lock = threading.Lock()

    async def create(self, request: Request):
        prepared = await self.prepare(await read_json(request, self.opts.limits.max_body_bytes))
        if prepared.req.stream:
            return self.stream(prepared, request)
        return await self.complete(prepared, request)

    # -- parse and prepare ----------------------------------------------------------------------------
    async def prepare(self, payload: Any) -> Prepared:
        req = oa.parse_request(payload)
        target = find(self.served, req.model)
        lim = self.opts.limits
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > lim.max_tokens:
            raise oa.APIError(
                400,
                f"max_tokens={asked} is over this server's limit of {lim.max_tokens}",
                "invalid_value",
                "max_tokens",
            )
        conversation, refs = conversation_of(req, lim.max_images)
        images = [await run_in_threadpool(self.load_image, ref, i) for i, ref in enumerate(refs)]
        prompt_tokens, context = await run_in_threadpool(self.count_prompt, target, conversation, images)
        max_tokens = asked or min(lim.default_max_tokens, lim.max_tokens)
        if context is not None:
            if prompt_tokens >= context:
                raise oa.APIError(
                    400,
                    f"This model's maximum context length is {context} tokens. However, your messages resulted in "
                    f"{prompt_tokens} tokens (images included). Please reduce the length of the messages.",
                    "context_length_exceeded",
                    "messages",
                )
            max_tokens = min(max_tokens, context - prompt_tokens)
        from mixtrain.models.inference import generation_settings

        gen = generation_settings({"max_new_tokens": max_tokens, "temperature": req.temperature, "top_p": req.top_p})
        gen["stop"] = oa.stop_list(req)
        return Prepared(req, target, conversation, images, gen, prompt_tokens)

    def load_image(self, ref: str, index: int):
        """Decode one image part (data URL, http(s) URL fetched in memory, or a local file if allowed)."""
        from mixtrain.images import ImageTooLarge, image_from_bytes, image_from_data_url, load_image
        from mixtrain.serving.fetch import FetchRefused, fetch

        lim, shown = self.opts.limits, f"image {index + 1}"
        try:
            if ref[:5].lower() == "data:":
                return image_from_data_url(ref, max_bytes=lim.max_image_bytes, max_pixels=lim.max_image_pixels)
            if ref.split(":", 1)[0].lower() in ("http", "https"):
                data = fetch(
                    ref,
                    allow_private=self.opts.allow_private_urls,
                    max_bytes=lim.max_image_bytes,
                    timeout=lim.download_timeout_s,
                    max_redirects=lim.max_redirects,
                )
                return image_from_bytes(data, shown, max_bytes=lim.max_image_bytes, max_pixels=lim.max_image_pixels)
            if not self.opts.allow_local_files:
                raise oa.APIError(
                    400, f"{shown}: local file paths are disabled on this server", "invalid_image_url", "image_url"
                )
            return load_image(ref, self.opts.image_cache, max_pixels=lim.max_image_pixels)
        except FetchRefused as err:
            raise oa.APIError(err.status, f"{shown}: {err.reason}", err.code, "image_url") from None
        except ImageTooLarge as err:
            raise oa.APIError(413, f"{shown}: {err}", "image_too_large", "image_url") from None
        except InvalidInput as err:
            raise oa.APIError(400, f"{shown}: {err}", "invalid_image", "image_url") from None

    def count_prompt(self, target: Served, conversation: list[dict], images: list) -> tuple[int, int | None]:
        """(prompt tokens with images, the model's context length or None) — rendered like generate_batch."""
        proc, lock = self._counter(target)
        with lock:
            try:
                text = proc.apply_chat_template(
                    conversation, add_generation_prompt=True, tokenize=False, enable_thinking=False
                )
                ids = proc(images=images or None, text=[text], return_tensors="np")["input_ids"]
            except Exception as err:  # the processor's own refusal of this input (image shape, template)
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                if isinstance(err, StopIteration):  # more image placeholders in the text than images sent
                    first = "the text holds more image placeholders than the request has images"
                raise oa.APIError(
                    400, f"the model's processor cannot take this input: {first}", "invalid_value", "messages"
                ) from None
        return int(ids.shape[1]), context_length(target.base.model if target.base else None)

    def _counter(self, target: Served) -> tuple[Any, threading.Lock]:
        with self._counters_lock:
            if target.name not in self._counters:
                self._counters[target.name] = (copy.deepcopy(target.processor), threading.Lock())
            return self._counters[target.name]

    # -- serve ------------------------------------------------------------------------------------------
    def _job(self, p: Prepared, loop, on_text=None) -> Job:
        return Job(p.target, p.conversation, p.images, p.gen, p.req.seed, loop, loop.create_future(), on_text=on_text)

    async def complete(self, p: Prepared, request: Request) -> dict:
        loop = asyncio.get_running_loop()
        job = self._job(p, loop)
        self._submit(job)
        watch = asyncio.ensure_future(_cancel_on_disconnect(request, job))
        try:
            g = await job.future
        finally:
            watch.cancel()
            if not job.future.done():  # this handler was cancelled (client gone, server stopping)
                job.cancel.set()
        return oa.completion(
            oa.new_id(), int(time.time()), p.req.model, g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens
        )

    def stream(self, p: Prepared, request: Request) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        job = self._job(p, loop, on_text=lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t))
        job.future.add_done_callback(lambda _f: pieces.put_nowait(None))
        self._submit(job)
        watch = asyncio.ensure_future(_cancel_on_disconnect(request, job))
        usage = bool(p.req.stream_options and p.req.stream_options.include_usage)
        return StreamingResponse(
            _sse(job, pieces, watch, oa.new_id(), p.req.model, p.gen["stop"], usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _submit(self, job: Job) -> None:
        try:
            self.batcher.submit(job)
        except RuntimeError:
            raise oa.APIError(503, "the server is shutting down", "server_shutting_down") from None


async def _cancel_on_disconnect(request: Request, job: Job) -> None:
    """Wait for the client to go away (the body is already read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel.set()
            return


async def _sse(
    job: Job,
    pieces: asyncio.Queue,
    watch: asyncio.Future,
    cid: str,
    model: str,
    stops: list[str],
    include_usage: bool,
):
    """``chat.completion.chunk`` events as tokens arrive, then the finish chunk, usage (if asked) and [DONE].

    The streamed text is exactly the final text: text that might still turn into a stop string, and
    whitespace the final answer would strip, is held back until it is safe to send. Leaving early
    (the client disconnected) cancels the job.
    """
    created = int(time.time())
    extra = {"usage": None} if include_usage else None

    def event(obj: dict) -> str:
        if extra is not None and "usage" not in obj:
            obj["usage"] = None
        return f"data: {json.dumps(obj)}\n\n"

    try:
        yield event(oa.chunk(cid, created, model, {"role": "assistant", "content": ""}))
        raw, sent = "", ""
        while (piece := await pieces.get()) is not None:
            raw += piece
            safe = safe_prefix(raw, stops)
            if len(safe) > len(sent) and safe.startswith(sent):
                yield event(oa.chunk(cid, created, model, {"content": safe[len(sent) :]}))
                sent = safe
        try:
            g = job.future.result()
        except Exception as err:
            log.error("streamed generation failed", exc_info=err.__cause__ or err)
            yield f"data: {json.dumps(oa.APIError(500, str(err), 'internal_error').body())}\n\n"
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
    finally:
        watch.cancel()
        if not job.future.done():
            job.cancel.set()


def safe_prefix(raw: str, stops: list[str]) -> str:
    """The part of ``raw`` sure to be in the final answer: cut at a stop string, minus a tail that could
    still grow into one, minus whitespace the final answer strips."""
    text = raw.lstrip()
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    if cuts:
        return text[: min(cuts)].rstrip()
    tail = max((k for s in stops for k in range(1, min(len(s), len(text) + 1)) if text.endswith(s[:k])), default=0)
    return text[: len(text) - tail].rstrip()


def context_length(model) -> int | None:
    """The language model's context window (``max_position_embeddings``), or None where the config has none."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def find(served: dict[str, Served], name: str) -> Served:
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


async def read_json(request: Request, limit: int):
    """The body as JSON, read under ``limit`` bytes; malformed or absurdly nested JSON is a 400."""
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
    except RecursionError:
        raise oa.APIError(400, "the request body is nested too deeply", "invalid_json") from None


def conversation_of(req: oa.ChatRequest, max_images: int) -> tuple[list[dict], list[str]]:
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
