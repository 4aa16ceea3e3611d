"""One loopback rule for both servers (`mixtrain ui`, `model serve`) and the image-URL address rule."""

from __future__ import annotations

import pytest

from mixtrain.cli.ui import is_loopback as ui_is_loopback
from mixtrain.netaddr import is_loopback, is_public
from mixtrain.serving.server import is_loopback as serve_is_loopback


@pytest.mark.parametrize(
    "host,loop",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.0.9", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("192.168.1.5", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_one_loopback_rule_for_both_servers(host, loop):
    assert is_loopback(host) is loop
    assert ui_is_loopback is is_loopback and serve_is_loopback is is_loopback  # one function, not two copies


@pytest.mark.parametrize(
    "address,public",
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("fd00:ec2::254", False),  # AWS metadata over IPv6 (ULA)
        ("fe80::1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped private
        ("::ffff:169.254.169.254", False),
        ("not-an-ip", False),
    ],
)
def test_public_addresses_only(address, public):
    assert is_public(address) is public
