"""Verify many image references at once: a process pool for local files, threads for URLs, and a cache of
files already verified — so a dataset's bad rows are all reported in one pass, in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from mixtrain.errors import MixtrainError
from mixtrain.images.decode import decode_every_byte
from mixtrain.images.resolve import MAX_PIXELS, _write_atomic, resolve_image

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
            decode_every_byte(im, data)
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
