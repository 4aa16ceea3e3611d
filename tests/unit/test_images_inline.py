"""images.image_from_data_url / image_from_bytes: inline images (OpenAI data URLs) under the file limits."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from test_images import png_header_only

from mixtrain.errors import InvalidInput
from mixtrain.images import image_from_bytes, image_from_data_url


def _png(size=(8, 6), color=(200, 30, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def test_data_url_decodes_to_rgb_pixels():
    im = image_from_data_url(_url(_png(color=(1, 2, 3))))
    assert im.mode == "RGB" and im.size == (8, 6) and im.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize(
    "url,message",
    [
        ("data:image/png;base64,@@@", "not valid base64"),
        ("data:text/plain;base64,aGk=", "malformed data URL"),
        ("data:image/png,rawbytes", "malformed data URL"),
        ("image/png;base64,aGk=", "malformed data URL"),
        (_url(b"hello, not an image"), "does not decode as an image"),
    ],
)
def test_bad_data_urls(url, message):
    with pytest.raises(InvalidInput, match=message):
        image_from_data_url(url)


def test_limits_bytes_and_pixels():
    with pytest.raises(InvalidInput, match="over the limit of 100"):
        image_from_bytes(_png(size=(64, 64)), "x", max_bytes=100)
    with pytest.raises(InvalidInput, match="over 100 bytes"):
        image_from_data_url(_url(_png(size=(64, 64))), max_bytes=100)
    with pytest.raises(InvalidInput, match="decompression bomb"):
        image_from_bytes(png_header_only(50_000, 50_000), "bomb")
    with pytest.raises(InvalidInput, match="over the limit of 47"):
        image_from_bytes(_png(), "small", max_pixels=47)


def test_size_refusals_are_image_too_large_and_bad_bytes_are_not():
    from mixtrain.images import ImageTooLarge

    with pytest.raises(ImageTooLarge):
        image_from_bytes(_png(size=(64, 64)), "x", max_bytes=100)
    with pytest.raises(ImageTooLarge):
        image_from_bytes(png_header_only(50_000, 50_000), "bomb")
    with pytest.raises(InvalidInput) as info:
        image_from_bytes(b"junk", "junk")
    assert not isinstance(info.value, ImageTooLarge)
