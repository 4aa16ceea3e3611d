"""Thumbnails for images that the stores reference — and only those.

The browser never names a file: it names a cell (dataset + snapshot + row + column, eval + row,
or an upload's content hash) and the server looks the reference up in the store, resolves it
through ``mixtrain.images`` (paths, URLs, cache, decompression-bomb limits) and serves a cached
JPEG thumbnail. A path in a URL therefore cannot reach any other file.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from mixtrain.errors import MixtrainError

SIZE = 192
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_lock = threading.Lock()


def looks_like_image(value) -> bool:
    if not isinstance(value, str):
        return False
    v = value.strip().lower().split("?", 1)[0]
    return v.endswith(IMAGE_EXT)


def is_image_column(name: str, values: list) -> bool:
    from mixtrain.images import is_ref

    if any(
        looks_like_image(v) or is_ref(v) or (isinstance(v, list) and any(is_ref(x) or looks_like_image(x) for x in v))
        for v in values
    ):
        return True
    return bool(re.search(r"(^|_)(image|img|picture|photo)s?($|_)", name.lower())) and any(
        isinstance(v, str) and v for v in values
    )


def image_count(value) -> int:
    """How many images a cell shows (a list cell: one thumbnail each)."""
    if isinstance(value, (list, tuple)):
        return len(value)
    return 1 if value else 0


def image_label(value, k: int = 0) -> str:
    """What a thumbnail's alt text and tooltip say for the ``k``-th image of a cell: a stored reference's
    source (the original path, URL or e.g. "tar:shard-0000.tar#key.jpg"), a string cell's path or URL."""
    from mixtrain.images import is_ref

    if isinstance(value, (list, tuple)):
        value = value[k] if 0 <= k < len(value) else None
    if is_ref(value):
        sha = value.get("sha256") or ""
        return str(value.get("source") or (f"image {sha[:12]}" if sha else "image"))
    return "" if value is None else str(value)


def thumbnail(ref: str, settings, size: int = SIZE) -> Path | None:
    """A cached JPEG thumbnail of ``ref``, or None when it cannot be resolved or decoded."""
    from mixtrain.images import resolve_image

    try:
        src = resolve_image(ref, settings.image_cache)
    except MixtrainError:
        return None
    st = src.stat()
    key = hashlib.sha256(f"{src}|{st.st_mtime_ns}|{st.st_size}|{size}".encode()).hexdigest()
    out = settings.home / "cache" / "thumbs" / f"{key}.jpg"
    if out.exists():
        return out
    from PIL import Image, ImageOps

    with _lock:
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with Image.open(src) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((size, size))
                tmp = out.with_suffix(f".{os.getpid()}.tmp")
                im.save(tmp, "JPEG", quality=85)
                os.replace(tmp, out)
        except OSError:
            return None
    return out


UPLOAD_NAME = re.compile(r"^[0-9a-f]{64}\.png$")


def save_upload(data: bytes, settings, max_bytes: int = 20 * 2**20) -> Path:
    """Store an uploaded image (re-encoded as PNG, so only real images land) under a content-hash name."""
    import io

    from PIL import Image, UnidentifiedImageError

    from mixtrain.errors import InvalidInput

    if not data:
        raise InvalidInput("the uploaded file is empty", "choose an image file")
    if len(data) > max_bytes:
        raise InvalidInput(f"the uploaded image is over {max_bytes // 2**20} MiB", "upload a smaller image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > 89_478_485:
                raise _bomb(f"{im.width}×{im.height}")
            im = im.convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "PNG")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb("too many") from None  # PIL refused to open it: far over its own limit
    except (UnidentifiedImageError, OSError):
        raise InvalidInput(
            "the uploaded file is not an image PIL can read", "upload a PNG, JPEG, WebP, GIF or BMP file"
        ) from None
    png = buf.getvalue()
    out = uploads_dir(settings) / f"{hashlib.sha256(png).hexdigest()}.png"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, out)
    return out


def _bomb(size: str):
    from mixtrain.errors import InvalidInput

    return InvalidInput(
        f"the uploaded image is a decompression bomb ({size} pixels: a small file that would decode to "
        "gigabytes of memory)",
        "upload an image under 89 million pixels (e.g. downscale it to 4096×4096)",
    )


def uploads_dir(settings) -> Path:
    return settings.home / "cache" / "uploads"
