"""Network address rules shared by the servers (`mixtrain ui`, `mixtrain model serve`): one answer each.

``is_loopback`` decides whether a bind address is reachable only from this machine (so a server may
run without a key); ``is_public`` decides whether a server may fetch a URL that resolved to an
address (the image-URL SSRF rule). Both take the spellings users and URLs write: ``::1`` and
``[::1]``, ``localhost``, any ``127.x.y.z``, and IPv4-mapped IPv6 (``::ffff:127.0.0.1``).
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address (brackets and an IPv6 zone dropped, IPv4-mapped IPv6 unwrapped), or None."""
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.x.y.z``, ``::1`` and ``[::1]`` (a bind address only this machine reaches)."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    addr = ip(host)
    return addr is not None and addr.is_loopback


def is_public(address: str) -> bool:
    """True when ``address`` (a resolved IP) is a globally routed unicast address.

    False for loopback, private (RFC 1918, ULA), link-local (169.254/16 holds the cloud metadata
    service), carrier-grade NAT, multicast, reserved and unspecified addresses — what a server must
    not be talked into fetching from on a client's behalf.
    """
    addr = ip(address)
    return addr is not None and addr.is_global and not addr.is_multicast
