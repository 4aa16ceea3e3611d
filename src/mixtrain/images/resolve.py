"""Resolve (and cache) an image given by local path, http(s) URL or s3:// URI — shared by training data prep and inference.

Every image is decoded before it is accepted, so a bad row fails in seconds during data prep rather
than hours into training. Downloads land in a content-addressed cache (``<sha256>.<ext>``) plus a
tiny per-URL index, so a dataset is fetched once however many runs use it. PIL and httpx are
imported inside functions: the CLI process imports this module and must stay fast.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

from mixtrain.errors import InvalidInput, MixtrainError

MAX_BYTES = 50 * 2**20
MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold


class ImageTooLarge(InvalidInput):
    """Over a byte or pixel limit (a server answers 413 rather than 400)."""


_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tiff"}


def resolve_image(
    ref: str,
    cache_dir: Path | str,
    *,
    timeout: float = 20.0,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Path:
    """Return a local, verified image file for ``ref`` (path, ``~``, ``file://`` or http(s) URL).

    Raises InvalidInput with the reason and a fix. ``max_bytes`` caps downloads only; ``max_pixels``
    applies to every image (PIL itself still refuses anything over twice its global limit).
    """
    ref = (ref or "").strip()
    if not ref:
        raise InvalidInput("empty image reference", "give a file path or an http(s) URL")
    try:
        scheme = urlsplit(ref).scheme.lower()
    except ValueError as err:  # e.g. an unbalanced "[" in the host
        raise InvalidInput(f"malformed image reference {ref!r}: {err}", "fix the URL") from err
    if scheme in ("http", "https"):
        return _download(ref, Path(cache_dir).expanduser().resolve(), timeout, max_bytes, max_pixels)
    if scheme == "s3":
        return _download_s3(ref, Path(cache_dir).expanduser().resolve(), max_bytes, max_pixels)
    if scheme == "file":
        parts = urlsplit(ref)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"file URI {ref!r} names a remote host", "use a local path")
        path = Path(url2pathname(parts.path))
    elif len(scheme) > 1 and not os.path.exists(ref):  # "c:" is a drive; "a:b.png" may be a file
        raise InvalidInput(
            f"unsupported image reference {_shown(ref)!r} (scheme {scheme!r})",
            "use a local file path, an http(s) URL or an s3:// URI (copy other storage locally first)",
        )
    else:
        path = Path(ref).expanduser()
    path = _local_file(path, ref)
    _inspect(path, ref, max_pixels)
    return path


def table_image_ref(value, source_dirs: list[str]) -> str:
    """An image cell of a dataset as a reference: a relative path is looked up next to the file(s) the
    dataset was loaded from, then in the working directory — one rule for training, evals and the dashboard.

    Plain ``os.path`` on ``str`` folders: this runs once per row, and ``Path`` objects cost more than the check.
    """
    ref = "" if value is None else str(value).strip()
    if not ref or "://" in ref or ref.startswith(("/", "~")):
        return ref
    plain = "/." not in "/" + ref and "//" not in ref and not ref.endswith("/")  # else let Path normalise it
    for folder in source_dirs:
        candidate = os.path.join(folder, ref) if plain else str(Path(folder) / ref)
        if os.path.exists(candidate):
            return candidate
    try:
        return str(Path(ref).resolve())
    except (RuntimeError, OSError):  # a symlink loop: the row's image check names it, never a traceback here
        return os.path.abspath(ref)


def _local_file(path: Path, ref: str) -> Path:
    """The regular file ``path`` names, or InvalidInput saying what it is instead.

    Odd files are bad rows like any other: a symlink loop, a dangling link, a FIFO (opening it would
    block forever), a device, a directory or an unreadable file.
    """
    import stat

    try:
        resolved = path.resolve(strict=True)
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise InvalidInput(
                f"image {ref!r} is a broken symlink (to {os.readlink(path)})", "fix the link or the path"
            ) from None
        raise InvalidInput(f"image {ref!r} not found (looked at {path.absolute()})", "check the path") from None
    except RuntimeError:  # Python's "Symlink loop" for a link cycle
        raise InvalidInput(f"image {ref!r} is a symlink loop", "point the link at a real image file") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise InvalidInput(f"image {ref!r} is a symlink loop", "point the link at a real image file") from None
        raise InvalidInput(
            f"image {ref!r} cannot be read: {exc.strerror}", "check the path and its permissions"
        ) from None
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a special file"
        )
        raise InvalidInput(f"image {ref!r} is {kind}, not a file", "point to an image file")
    try:
        with open(resolved, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InvalidInput(f"image {ref!r} is not readable: {exc.strerror}", "fix the file's permissions") from None
    return resolved


def load_image(ref: str, cache_dir: Path | str, **limits):
    """Open ``ref`` as an RGB ``PIL.Image``, EXIF-rotated like transformers' own ``load_image``.

    Matching transformers matters: the model then sees the same pixels at inference as in training.
    """
    from PIL import Image, ImageOps

    with Image.open(resolve_image(ref, cache_dir, **limits)) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def _inspect(path: Path, ref: str, max_pixels: int, served_as: str | None = None) -> str:
    """Decode the whole file (verify alone misses truncation); return PIL's format name.

    Content-type is not trusted either way: servers label images octet-stream and error pages
    200 OK, so only decoding tells. ``served_as`` (the content-type) makes that error clearer.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt, (w, h) = im.format, im.size
            if w * h > max_pixels:  # checked before decoding a single pixel
                raise _bomb(ref, w * h, max_pixels)
            im.verify()
        with Image.open(path) as im:
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb(ref, None, max_pixels) from err
    except MixtrainError:
        raise
    except Exception as err:  # PIL raises many types for a bad file; all mean "not an image"
        if served_as is not None:
            raise InvalidInput(
                f"{_shown(ref)!r} is not an image (server sent {served_as}; {err})",
                "use a direct link to the image file, not a web page",
            ) from err
        raise InvalidInput(
            f"image {_shown(ref)!r} does not decode as an image ({type(err).__name__}: {err})",
            "replace it with a valid JPEG/PNG/WebP file, or drop the row",
        ) from err
    return fmt


def _bomb(ref: str, pixels: int | None, limit: int) -> InvalidInput:
    size = f"{pixels:,} pixels" if pixels else "too many pixels"
    return ImageTooLarge(
        f"image {_shown(ref)!r} refused: {size}, over the limit of {limit:,} (decompression bomb?)",
        "downscale the image, or raise max_pixels if you trust it",
    )


def _download(url: str, cache_dir: Path, timeout: float, max_bytes: int, max_pixels: int) -> Path:
    """Fetch ``url`` once into the cache; later calls read the index and skip the network."""
    index = cache_dir / "urls" / hashlib.sha256(url.encode()).hexdigest()
    if index.is_file():
        cached = cache_dir / index.read_text().strip()
        if cached.is_file():
            _inspect(cached, url, max_pixels)
            return cached
    import httpx

    shown = _shown(url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, deadline = hashlib.sha256(), time.monotonic() + timeout
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise InvalidInput(
                    f"could not download {shown!r}: HTTP {resp.status_code}",
                    "check the URL and that it is publicly reachable",
                )
            size, ctype = 0, resp.headers.get("content-type", "?")
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ImageTooLarge(
                        f"download {shown!r} is over {max_bytes:,} bytes", "use a smaller image, or raise max_bytes"
                    )
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("download deadline passed")
                digest.update(chunk)
                out.write(chunk)
        fmt = _inspect(tmp, url, max_pixels, served_as=ctype)
        name = digest.hexdigest() + _EXT.get(fmt, f".{(fmt or 'img').lower()}")
        os.replace(tmp, cache_dir / name)
        _write_atomic(index, name)
        return cache_dir / name
    except httpx.TimeoutException as err:
        raise InvalidInput(
            f"download {shown!r} timed out after {timeout:g}s", "retry, check the network, or raise the timeout"
        ) from err
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        raise InvalidInput(
            f"could not download {shown!r}: {type(err).__name__}: {err}", "check the URL and the network"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


_STORED = re.compile(r"/images/[0-9a-f]{2}/([0-9a-f]{64})\.[a-z0-9]+$")


def _download_s3(uri: str, cache_dir: Path, max_bytes: int, max_pixels: int) -> Path:
    """Fetch an ``s3://`` object once into the cache, like an http(s) URL, through the configured object
    store (``MIXTRAIN_S3_*`` + ``AWS_*`` keys). A stored image of a team warehouse (``…/images/ab/<sha256>.fmt``)
    must hash to its name: a damaged object is refused, never cached."""
    from mixtrain import objectstore

    index = cache_dir / "urls" / hashlib.sha256(uri.encode()).hexdigest()
    if index.is_file():
        cached = cache_dir / index.read_text().strip()
        if cached.is_file():
            _inspect(cached, uri, max_pixels)
            return cached
    try:
        if max_bytes:
            size = objectstore.size(uri)
            if size is not None and size > max_bytes:
                raise ImageTooLarge(f"{uri!r} is over {max_bytes:,} bytes", "use a smaller image, or raise max_bytes")
        tmp, digest = objectstore.get_file(uri, cache_dir)
    except FileNotFoundError:
        raise InvalidInput(f"image {uri!r} not found in the object store", "check the URI") from None
    except InvalidInput:
        raise
    except MixtrainError as err:  # keys, permissions, an unreachable store: this image cannot be read
        raise InvalidInput(f"could not read image {uri!r}: {err.what}", err.fix or "check the object store") from None
    try:
        stored = _STORED.search(uri)
        if stored and stored.group(1) != digest:
            raise InvalidInput(
                f"stored image {uri!r} is damaged (its bytes do not match its sha256)",
                "re-create the dataset from its source files",
            )
        fmt = _inspect(tmp, uri, max_pixels)
        name = digest + _EXT.get(fmt, f".{(fmt or 'img').lower()}")
        os.replace(tmp, cache_dir / name)
        _write_atomic(index, name)
        return cache_dir / name
    finally:
        tmp.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    """Temp file + rename, so a concurrent reader never sees a half-written index entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _shown(ref: str) -> str:
    """A URL fit for messages: credentials and query strings (signed-URL tokens) elided."""
    parts = urlsplit(ref)
    if not parts.scheme or len(parts.scheme) == 1:
        return ref
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
