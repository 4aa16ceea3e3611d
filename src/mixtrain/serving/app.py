"""FastAPI routes of the OpenAI-compatible server: guards (host, auth, content type), models, chat completions.

Every refusal is an OpenAI error object with its status (400 bad value, 401 auth, 404 unknown model
or route, 413 over a size limit, 415 not JSON, 422 schema) — never a traceback; an unexpected failure
is a 500 ``server_error`` whose details go to the server log only. Routes are thin: the chat route
hands the request to ``handler.ChatHandler`` (parse, prepare, serve or stream).

Browser-driven requests are refused: on a loopback bind the ``Host`` header must name loopback (a
page that rebinds its own domain to 127.0.0.1 sends its own name), and a POST body must be declared
``application/json`` (what a cross-site form or ``text/plain`` fetch cannot send without a CORS
preflight, which this server never grants).
"""

from __future__ import annotations

import hmac
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mixtrain.netaddr import is_loopback
from mixtrain.serving import openai as oa
from mixtrain.serving.batcher import Batcher, GenerationFailed
from mixtrain.serving.handler import ChatHandler, ServeOptions, find
from mixtrain.serving.pool import Base, Served
from mixtrain.serving.spec import Limits

__all__ = ["Limits", "ServeOptions", "create_app"]

log = logging.getLogger("mixtrain.serve")


def create_app(bases: list[Base], batcher: Batcher, opts: ServeOptions) -> FastAPI:
    served = {s.name: s for b in bases for s in b.served}
    created = int(time.time())
    app = FastAPI(title="mixtrain model server", docs_url=None, redoc_url=None, openapi_url=None)

    handler = ChatHandler(served, batcher, opts)
    check_host = is_loopback(opts.bound_host)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if check_host and not _loopback_host_header(request.headers.get("host", "")):
            return _error(
                oa.APIError(
                    400,
                    "the Host header does not name this loopback server (use http://127.0.0.1:PORT or localhost)",
                    "invalid_host",
                )
            )
        if request.method == "POST" and not _is_json(request.headers.get("content-type", "")):
            return _error(
                oa.APIError(
                    415, "send the request body as JSON (Content-Type: application/json)", "invalid_content_type"
                )
            )
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

    @app.exception_handler(GenerationFailed)
    async def generation_failed(_request, err: GenerationFailed):
        log.error("generation failed", exc_info=err.__cause__)
        return _error(oa.APIError(500, str(err), "internal_error"))

    @app.exception_handler(Exception)
    async def unexpected(_request, err: Exception):
        log.exception("request failed")
        return _error(oa.APIError(500, f"internal server error ({type(err).__name__})", "internal_error"))

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "models": sorted(served),
            "pending": batcher.pending,
            "batches": batcher.batch_count,
            "largest_batch": batcher.largest_batch,
            "completion_tokens": batcher.completion_tokens,
            "cancelled": batcher.cancelled,
        }

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [_card(s, created) for s in served.values()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        return _card(find(served, name), created)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await handler.create(request)

    return app


def _error(err: oa.APIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def _card(s: Served, created: int) -> dict:
    return oa.model_card(s.name, s.base_model if s.adapter_path else None, created)


def _loopback_host_header(value: str) -> bool:
    """``Host`` names loopback: ``127.0.0.1:8000``, ``localhost``, ``[::1]:8000`` (an IPv6 literal is bracketed)."""
    value = value.strip()
    if value.startswith("["):
        host = value[: value.find("]") + 1] if "]" in value else value
    else:
        host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return bool(host) and is_loopback(host)


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))
