"""Decode in-memory images (raw bytes, ``data:`` URLs) under the same limits as files."""

from __future__ import annotations

from mixtrain.errors import InvalidInput, MixtrainError
from mixtrain.images.resolve import MAX_BYTES, MAX_PIXELS, ImageTooLarge, _bomb


def image_from_bytes(data: bytes, shown: str, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS):
    """Decode in-memory image bytes (e.g. an OpenAI ``data:`` URL) under the same limits as files.

    The size is checked before decoding and the pixel count before a pixel is decoded; returns an RGB
    ``PIL.Image``, EXIF-rotated like ``load_image`` so a served model sees what ``model run`` sees.
    """
    import io

    from PIL import Image, ImageOps

    if len(data) > max_bytes:
        raise ImageTooLarge(
            f"image {shown!r} is {len(data):,} bytes, over the limit of {max_bytes:,}", "send a smaller image"
        )
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise _bomb(shown, w * h, max_pixels)
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb(shown, None, max_pixels) from err
    except MixtrainError:
        raise
    except Exception as err:  # PIL raises many types for bad bytes; all mean "not an image"
        raise InvalidInput(
            f"image {shown!r} does not decode as an image ({type(err).__name__}: {err})",
            "send a valid JPEG/PNG/WebP image",
        ) from err


def image_from_data_url(url: str, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS):
    """Decode ``data:image/<type>;base64,<payload>`` (the OpenAI image part's inline form)."""
    import base64
    import binascii

    head, sep, payload = url.partition(",")
    if not sep or not head.lower().startswith("data:image/") or not head.lower().endswith(";base64"):
        raise InvalidInput(
            "malformed data URL (expected data:image/<type>;base64,<payload>)",
            "encode the image as data:image/png;base64,...",
        )
    if len(payload) > (max_bytes * 4) // 3 + 4:  # refuse before decoding a huge payload
        raise ImageTooLarge(f"inline image is over {max_bytes:,} bytes", "send a smaller image")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidInput(f"data URL is not valid base64 ({err})", "base64-encode the image bytes") from err
    return image_from_bytes(data, head + ",…", max_bytes=max_bytes, max_pixels=max_pixels)


def decode_every_byte(im, data: bytes) -> None:
    """Make ``im`` (opened from ``data``) decode its whole stream once, as cheaply as that can be done.

    JPEG is drafted at 1/8 DCT scale: libjpeg still entropy-decodes every byte, so a cut or damaged
    stream fails, at a fraction of the pixel work. Other formats are verified (PNG CRCs, which
    ``load()`` skips) and then loaded from a fresh handle, since ``verify()`` leaves ``im`` unusable.
    """
    import io

    from PIL import Image

    if im.format == "JPEG":
        im.draft(None, (1, 1))
        im.load()
    else:
        im.verify()
        with Image.open(io.BytesIO(data)) as again:
            again.load()
