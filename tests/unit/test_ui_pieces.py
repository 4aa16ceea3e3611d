"""Dashboard pieces without a server: the loss chart, the run form's parsing, host and redirect checks."""

from __future__ import annotations

import re

import pytest

from mixtrain.cli.ui import is_loopback
from mixtrain.ui import charts, forms
from mixtrain.ui.app import _local

INPUTS = [
    {"name": "label", "type": "str", "required": True, "default": None, "choices": None, "description": ""},
    {"name": "lines", "type": "int", "required": False, "default": 3, "choices": None, "description": ""},
    {"name": "rate", "type": "float", "required": False, "default": 0.5, "choices": None, "description": ""},
    {"name": "loud", "type": "bool", "required": False, "default": False, "choices": None, "description": ""},
    {"name": "mode", "type": "str", "required": False, "default": "a", "choices": ["a", "b"], "description": ""},
    {"name": "tags", "type": "list", "required": False, "default": [], "choices": None, "description": ""},
]


def _markers(svg: str, series: str) -> int:
    group = re.search(rf'<g id="series-{series}">(.*?)</g>\s*</g>', svg, re.DOTALL)
    assert group, f"no series-{series} group"
    return len(re.findall(r"<use ", group.group(1)))


def test_loss_chart_has_one_marker_per_logged_step():
    metrics = [{"step": s, "epoch": s / 10, "loss": 5 - s * 0.1, "learning_rate": 1e-3} for s in range(1, 8)]
    metrics[3]["eval_loss"] = 4.2
    metrics[6]["eval_loss"] = 4.0
    svg = charts.loss_svg(metrics)
    assert svg.startswith("<svg")
    assert _markers(svg, "loss") == 7
    assert _markers(svg, "eval_loss") == 2


def test_no_loss_no_chart():
    assert charts.loss_svg([]) is None
    assert charts.loss_svg([{"step": 1, "learning_rate": 0.1}]) is None


def test_form_types_values_like_the_cli_and_reports_each_field():
    typed, errors = forms.parse(
        INPUTS, {"label": "x", "lines": "7", "rate": "", "loud": "true", "mode": "b", "tags": '["p","q"]'}
    )
    assert errors == {}
    assert typed == {
        "label": "x",
        "lines": 7,
        "loud": True,
        "mode": "b",
        "tags": ["p", "q"],
    }  # empty rate → workflow default
    typed, errors = forms.parse(INPUTS, {"label": "", "lines": "seven", "rate": "fast", "mode": "c", "tags": "{"})
    assert set(errors) == {"label", "lines", "rate", "mode", "tags"}
    assert errors["lines"].startswith("expected an integer, got 'seven'")
    assert "not one of a, b" in errors["mode"]


def test_form_fields_show_defaults_and_keep_typed_values():
    fields = {f["name"]: f for f in forms.fields(INPUTS, {"lines": "oops"}, {"lines": "expected an integer"})}
    assert fields["lines"]["value"] == "oops" and fields["lines"]["error"] == "expected an integer"
    assert fields["rate"]["value"] == "0.5" and fields["loud"]["value"] == "false" and fields["tags"]["value"] == "[]"
    assert (
        fields["label"]["value"] == ""
        and fields["mode"]["widget"] == "select"
        and fields["loud"]["options"] == ["true", "false"]
    )


@pytest.mark.parametrize(
    "host,loop",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback(host, loop):
    assert is_loopback(host) is loop


@pytest.mark.parametrize(
    "target,out", [("/models", "/models"), ("//evil.example/", "/"), ("https://evil.example/", "/"), ("/\\evil", "/")]
)
def test_login_redirects_stay_on_site(target, out):
    assert _local(target) == out


def test_a_decompression_bomb_upload_is_called_one(tmp_path):
    """A 20000×20000 PNG (a few hundred bytes of header) is named a decompression bomb, not "not an image"."""
    import struct
    import zlib
    from types import SimpleNamespace

    from mixtrain.errors import InvalidInput
    from mixtrain.ui.thumbs import save_upload

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    for side in (20000, 10000):  # over PIL's own refusal (2× its limit), and over our 89 M-pixel check only
        header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
        data = (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b"")
        )
        with pytest.raises(InvalidInput) as info:
            save_upload(data, SimpleNamespace(home=tmp_path))
        assert "decompression bomb" in str(info.value) and "PIL can read" not in str(info.value)
    assert not (tmp_path / "cache").exists()
