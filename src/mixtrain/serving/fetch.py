"""Fetch a client's image URL for the server, without letting the client aim the server at the inside (SSRF).

A keyless server that fetches whatever URL a request names can be made to read the cloud metadata
service (169.254.169.254), an admin page on 127.0.0.1 or a host on the private network, and its
error messages tell the caller what is reachable. So, unless ``--allow-private-urls``:

- the address is checked where the socket is opened (an httpcore network backend), on the address
  actually connected to — every redirect hop opens its own connection and is checked the same way,
  and a DNS name that re-resolves to a private address between a check and the connect (DNS
  rebinding) cannot slip through, because the name is resolved once and that address is dialled;
- every failure reads "could not fetch the image" with a coarse reason, never an internal address,
  an exception text or a cache path.

Images are fetched into memory under the byte cap (no disk cache: the training-side URL cache is
shared with the home and its paths must not leak into responses), then decoded with the same limits
as an inline ``data:`` image.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mixtrain.netaddr import is_public


class FetchRefused(Exception):
    """The URL may not or could not be fetched; ``reason`` is safe to show the client."""

    def __init__(self, reason: str, status: int = 400, code: str = "invalid_image"):
        super().__init__(reason)
        self.reason, self.status, self.code = reason, status, code


class _Blocked(OSError):
    pass


def _guarded_backend(allowed: Callable[[str], bool]):
    import httpcore

    class Backend(httpcore.SyncBackend):
        """Resolve once, refuse a forbidden address, then dial that very address."""

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as err:
                raise httpcore.ConnectError(f"name does not resolve ({err.strerror})") from None
            addresses = [str(info[4][0]) for info in infos]
            if not addresses or not all(allowed(a) for a in addresses):
                raise _Blocked("address not allowed")
            return super().connect_tcp(addresses[0], port, timeout, local_address, socket_options)

    return Backend()


def fetch(
    url: str,
    *,
    allow_private: bool,
    max_bytes: int,
    timeout: float,
    max_redirects: int = 5,
    allowed: Callable[[str], bool] | None = None,
) -> bytes:
    """The body at ``url`` (http/https), at most ``max_bytes``; FetchRefused with a client-safe reason.

    ``allowed`` (a resolved address -> may it be dialled) overrides the rule ``allow_private`` picks
    (public addresses only, or any) — the tests' way to put a "public" and a "private" host on loopback.
    """
    import httpcore
    import httpx

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchRefused(
            "could not fetch the image: only http(s) URLs with a host name are accepted", code="invalid_image_url"
        )
    if allowed is None:
        allowed = (lambda _a: True) if allow_private else is_public
    transport = httpx.HTTPTransport(retries=0)
    # httpx has no public knob for httpcore's network backend; the pool is rebuilt with the guarded one.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=_guarded_backend(allowed)
    )
    deadline = time.monotonic() + timeout
    try:
        with (
            httpx.Client(
                transport=transport,
                follow_redirects=True,
                max_redirects=max_redirects,
                timeout=timeout,
                trust_env=False,
            ) as client,
            client.stream("GET", url) as resp,
        ):
            if resp.status_code >= 400:
                raise FetchRefused(f"could not fetch the image: the server answered HTTP {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise FetchRefused(
                        f"could not fetch the image: it is over the limit of {max_bytes:,} bytes",
                        413,
                        "image_too_large",
                    )
                if time.monotonic() > deadline:
                    raise FetchRefused(f"could not fetch the image: no complete answer within {timeout:g} s")
            return bytes(body)
    except FetchRefused:
        raise
    except Exception as err:  # every other cause gets a coarse, detail-free answer
        reason = _reason(err)
        code = "invalid_image_url" if reason is _PRIVATE else "invalid_image"
        raise FetchRefused(reason, code=code) from None


_PRIVATE = (
    "could not fetch the image: its address is private, loopback or link-local "
    "(a server started with --allow-private-urls may fetch such URLs)"
)


def _reason(err: BaseException) -> str:
    import httpx

    chain: list[Any] = []
    e: BaseException | None = err
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(x, _Blocked) for x in chain):
        return _PRIVATE
    if isinstance(err, httpx.TooManyRedirects):
        return "could not fetch the image: too many redirects"
    if isinstance(err, httpx.TimeoutException):
        return "could not fetch the image: the request timed out"
    return "could not fetch the image: the host could not be reached"
