"""Resolve an image given by local path or http(s) URL — shared by training data prep and inference.

Every image is decoded before it is accepted, so a bad row fails in seconds during data prep rather
than hours into training. Downloads land in a content-addressed cache (``<sha256>.<ext>``) plus a
tiny per-URL index, so a dataset is fetched once however many runs use it. PIL and httpx are
imported inside functions: the CLI process imports this module and must stay fast.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
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
    if scheme == "file":
        parts = urlsplit(ref)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"file URI {ref!r} names a remote host", "use a local path")
        path = Path(url2pathname(parts.path))
    elif len(scheme) > 1 and not os.path.exists(ref):  # "c:" is a drive; "a:b.png" may be a file
        raise InvalidInput(
            f"unsupported image reference {_shown(ref)!r} (scheme {scheme!r})",
            "use a local file path or an http(s) URL (copy other storage locally first)",
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
    return str(Path(ref).resolve())


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


VERIFIED_FILE = "verified-local.json"
POOL_MIN = 256  # below this many local files to decode, a process pool costs more than it saves
QUICK_MAX_BYTES = 64 * 2**20  # the quick check reads a file whole; anything larger takes the full check


def verify_images(
    refs: list[str],
    cache_dir: Path | str,
    *,
    workers: int = 8,
    progress: Callable[[int, int], None] | None = None,
    **limits,
) -> tuple[dict[str, str], list[tuple[int, str, str]]]:
    """Resolve many refs in parallel so a dataset's bad rows are all reported at once.

    Identical refs are resolved once. Returns ``({ref: path}, [(row_index, ref, reason), ...])``, paths
    as ``str`` (they go straight into JSONL; 50k ``Path`` objects cost a third of a re-run's check);
    ``progress(done, total)`` counts distinct refs. Decoding is CPU-bound and holds the GIL, so many
    local files are decoded in a process pool, in chunks (one message per chunk, not per file); URLs
    (network-bound) in threads. Local files take ``_quick_check`` first, which only ever says "good";
    anything it does not pass gets the full ``resolve_image``, so a bad file keeps its exact reason.
    A local file already verified with the same path, size and mtime is not decoded again
    (``verified-local.json`` in the cache; downloads are content-addressed already).
    """
    unique = list(dict.fromkeys(refs))
    good: dict[str, str] = {}
    reasons: dict[str, str] = {}
    cache = Path(cache_dir).expanduser()
    verified = _load_verified(cache) if not limits else {}  # custom limits: decide afresh
    if verified:
        todo = []
        for r in unique:
            key = _local_key(r)
            if key is not None and key in verified:
                good[r] = verified[key]
            else:
                todo.append(r)
    else:  # a first run: no stat per file here; the workers take the keys, in parallel
        todo = unique
    done = len(unique) - len(todo)
    if progress and done:
        progress(done, len(unique))
    local = [r for r in todo if r.strip() and "://" not in r]
    cpus = _cpus()
    pooled = local if len(local) >= POOL_MIN and cpus > 1 else []
    in_pool = set(pooled)
    threaded = [r for r in todo if r not in in_pool]

    fresh: dict[str, str] = {}  # key -> path, for the cache

    def record(ref: str, path, reason, key) -> None:
        nonlocal done
        done += 1
        if path is not None:
            good[ref] = path
            if key is not None:
                fresh[key] = path
        else:
            reasons[ref] = reason
        if progress:
            progress(done, len(unique))

    if pooled:
        from concurrent.futures import ProcessPoolExecutor

        import PIL.Image  # noqa: F401 -- once here, inherited by forked workers instead of imported by each

        # Enough chunks to balance the workers and report progress, few enough that messages stay cheap.
        size = max(16, min(2048, len(pooled) // (cpus * 8)))
        chunks = [pooled[i : i + size] for i in range(0, len(pooled), size)]
        with ProcessPoolExecutor(max_workers=cpus) as pool:
            for chunk, results in zip(
                chunks, pool.map(_verify_chunk, [(c, str(cache), limits) for c in chunks]), strict=True
            ):
                for ref, result in zip(chunk, results, strict=True):
                    record(ref, *result)
    if threaded:
        dirs: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=max(1, workers)) as threads:
            futures = {threads.submit(_verify_one, r, str(cache), limits, dirs): r for r in threaded}
            for fut in as_completed(futures):
                record(futures[fut], *fut.result())
    if fresh and not limits:
        _save_verified(cache, {**_load_verified(cache), **fresh})
    bad = [(i, r, reasons[r]) for i, r in enumerate(refs) if r in reasons]
    return good, bad


def _cpus() -> int:
    """The processors this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


Verdict = tuple[str | None, str | None, str | None]  # (path, None, cache key) or (None, reason, None)


def _verify_chunk(job) -> list[Verdict]:
    """One pool task: refs in, one verdict per ref out, in order."""
    refs, cache_dir, limits = job
    dirs: dict[str, str] = {}
    return [_verify_one(ref, cache_dir, limits, dirs) for ref in refs]


def _verify_one(ref: str, cache_dir: str, limits: dict, dirs: dict[str, str]) -> Verdict:
    """The cache key is taken before the decode: a file rewritten meanwhile gets a new key, so is checked again."""
    key = _local_key(ref)
    path = _quick_check(ref, limits.get("max_pixels", MAX_PIXELS), dirs)
    if path is not None:
        return path, None, key
    _, path, reason = _resolve_quietly((ref, cache_dir, limits))
    return path, reason, key if path is not None else None


def _quick_check(ref: str, max_pixels: int, dirs: dict[str, str]) -> str | None:
    """The resolved path of a plain local image file that decodes, else None (then the full check decides).

    Verifying a dataset costs one decode per file, so the common case gets a cheaper route with the
    same verdict: one ``lstat`` (a regular file, not a link: its real path is its folder's, looked up
    once per folder in ``dirs``), one read, one decode from memory. A JPEG is decoded at 1/8 scale
    (``draft``): libjpeg still entropy-decodes the whole stream — where truncation and corrupt data
    show — and skips most of the inverse DCT, upsampling and colour conversion (half the cost; JPEG
    has no ``verify``). Other formats get verify (PNG chunk CRCs, which ``load`` skips) and a full load.
    It never says "bad": any doubt (a scheme, a link, an odd file, an error) returns None, and
    ``resolve_image`` then gives the reason it always gave. tests/unit/test_verify_quick.py checks on
    damaged files that it never passes one that ``_inspect`` refuses.
    """
    import io
    import stat

    if not ref or ":" in ref or ref != ref.strip():
        return None
    try:
        path = os.path.expanduser(ref)
        head, name = os.path.split(path)
        if name in ("", ".", ".."):  # not a plain file name: leave the resolving to Path.resolve
            return None
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > QUICK_MAX_BYTES:
            return None
        with open(path, "rb") as fh:
            data = fh.read()
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                return None
            if im.format == "JPEG":
                im.draft(None, (1, 1))
                im.load()
            else:
                im.verify()
                with Image.open(io.BytesIO(data)) as again:
                    again.load()
        real = dirs.get(head)
        if real is None:
            real = dirs[head] = os.path.realpath(head or os.curdir)
        return os.path.join(real, name)
    except Exception:  # any doubt: the full check decides and explains
        return None


def _resolve_quietly(job) -> tuple[str, str | None, str | None]:
    """(ref, path, None) or (ref, None, reason): one bad file is one bad row, never a crash of the whole check."""
    ref, cache_dir, limits = job
    try:
        return ref, str(resolve_image(ref, cache_dir, **limits)), None
    except MixtrainError as err:
        return ref, None, " ".join(str(err).split())
    except Exception as err:  # an odd file must be one bad row, never a crash of the whole check
        return ref, None, f"image {ref!r} cannot be used: {type(err).__name__}: {err}"


def _local_key(ref: str) -> str | None:
    """``path|size|mtime_ns`` of a plain local file reference; None for URLs or anything not a file."""
    ref = (ref or "").strip()
    if not ref or "://" in ref:
        return None
    import stat

    try:
        path = os.path.abspath(os.path.expanduser(ref))  # cheap: no symlink walk, one stat below
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return f"{path}|{st.st_size}|{st.st_mtime_ns}" if stat.S_ISREG(st.st_mode) else None


def _load_verified(cache: Path) -> dict:
    import json

    try:
        return json.loads((cache / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _save_verified(cache: Path, entries: dict) -> None:
    import json

    try:
        _write_atomic(cache / VERIFIED_FILE, json.dumps(entries))
    except OSError:
        pass  # only a cache: a read-only home still verifies, just again next time


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
