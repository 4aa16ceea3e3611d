"""Login sessions and CSRF protection.

On loopback without a token the dashboard is as trusted as the CLI. With ``--token-secret`` the
user signs in with the secret's value once and gets an HttpOnly, SameSite=Strict session cookie.
Every state change is a POST carrying a CSRF token that must equal the one in the (HttpOnly,
SameSite=Strict) ``mixtrain_csrf`` cookie — a double-submit check that a cross-site page cannot
pass because it can neither read that cookie nor make the browser send it.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

SESSION_COOKIE = "mixtrain_session"
CSRF_COOKIE = "mixtrain_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
OPEN_PATHS = ("/login", "/static/")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_BODY = 25 * 2**20  # a playground upload (images are capped at 20 MiB) plus the form around it


class Guard:
    """State of the app's security: the login token (if any) and the live session ids."""

    def __init__(self, token: str | None):
        self.token = token
        self.sessions: set[str] = set()

    def login(self, given: str) -> str | None:
        if self.token is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        sid = secrets.token_urlsafe(32)
        self.sessions.add(sid)
        return sid

    def signed_in(self, request: Request) -> bool:
        return self.token is None or request.cookies.get(SESSION_COOKIE, "") in self.sessions


def set_cookie(response: Response, key: str, value: str, *, secure: bool) -> None:
    response.set_cookie(key, value, httponly=True, samesite="strict", secure=secure, path="/")


async def middleware(request: Request, call_next):
    guard: Guard = request.app.state.guard
    csrf = request.cookies.get(CSRF_COOKIE) or ""
    new_csrf = not csrf
    if new_csrf:
        csrf = secrets.token_urlsafe(32)
    request.state.csrf = csrf
    path = request.url.path
    if not path.startswith(OPEN_PATHS) and not guard.signed_in(request):
        if request.method in SAFE_METHODS:
            response: Response = RedirectResponse(f"/login?next={path}", status_code=303)
        else:
            response = PlainTextResponse("sign in first", status_code=401)
    elif request.method not in SAFE_METHODS and int(request.headers.get("content-length") or 0) > MAX_BODY:
        response = PlainTextResponse("request too large — upload an image under 20 MiB", status_code=413)
    elif request.method not in SAFE_METHODS and not await _csrf_ok(request, csrf, new_csrf):
        response = PlainTextResponse("CSRF check failed — reload the page and try again", status_code=403)
    else:
        response = await call_next(request)
    if new_csrf:
        set_cookie(response, CSRF_COOKIE, csrf, secure=request.url.scheme == "https")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


async def _csrf_ok(request: Request, csrf: str, new_csrf: bool) -> bool:
    if new_csrf:  # no cookie: the request did not come from one of our pages
        return False
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        await request.body()  # cache the body: the endpoint then parses the same bytes again
        form = await request.form()
        given = str(form.get(CSRF_FIELD, ""))
    return bool(given) and hmac.compare_digest(given.encode(), csrf.encode())
