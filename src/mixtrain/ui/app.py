"""The dashboard's FastAPI app: pages over ``MixClient``, security middleware, static assets.

``create_app`` is what `mixtrain ui` serves and what the tests drive. Expected errors become
pages (NotFound → 404, other ``MixtrainError`` → 400) with the same "what — how to fix" text the
CLI prints; the static folder holds every asset (htmx, CSS), so the app works offline.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from mixtrain.client import MixClient
from mixtrain.errors import MixtrainError, NotFound
from mixtrain.ui import (
    routes_datasets,
    routes_evals,
    routes_models,
    routes_runs,
    routes_secrets,
    security,
)
from mixtrain.ui.web import HERE, render


def create_app(client: MixClient | None = None, token: str | None = None) -> FastAPI:
    """``token``: the login token (a secret's value); None leaves the app open (loopback only)."""
    app = FastAPI(title="mixtrain", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.client = client or MixClient()
    app.state.guard = security.Guard(token)
    app.middleware("http")(security.middleware)
    if token is None:
        # Open (loopback) mode: answer only to loopback host names, so a web page that rebinds its own
        # domain to 127.0.0.1 (DNS rebinding) cannot read the dashboard through the user's browser.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"])
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (routes_datasets, routes_runs, routes_models, routes_evals, routes_secrets):
        app.include_router(module.router)

    @app.get("/")
    def home():
        return RedirectResponse("/datasets", status_code=303)

    @app.get("/login")
    def login_form(request: Request, next: str = "/"):
        return render(request, "login.html", next=_local(next), error=None)

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        target = _local(str(form.get("next") or "/"))
        sid = request.app.state.guard.login(str(form.get("token") or ""))
        if sid is None:
            return render(
                request,
                "login.html",
                401,
                next=target,
                error="wrong token — use the value of the secret named by --token-secret",
            )
        response = RedirectResponse(target, status_code=303)
        security.set_cookie(response, security.SESSION_COOKIE, sid, secure=request.url.scheme == "https")
        return response

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return render(request, "error.html", 404, message=str(exc))

    @app.exception_handler(MixtrainError)
    async def bad_request(request: Request, exc: MixtrainError):
        return render(request, "error.html", 400, message=str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError):
        in_path = any(e.get("loc", ("",))[0] == "path" for e in exc.errors())  # e.g. /runs/x/abc names nothing
        return render(
            request, "error.html", 404 if in_path else 400, message="not found" if in_path else "bad query parameter"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return render(request, "error.html", 404, message="not found")
        return render(request, "error.html", exc.status_code, message=str(exc.detail))

    return app


def _local(target: str) -> str:
    """Only same-site paths after login (no open redirect to another host)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
