"""The content-addressed image store ``dataset create`` / ``append`` fill, and the ingest that fills it.

Every image of an input — a local path, an http(s) URL, raw bytes, a Hugging Face ``Image`` struct
(``{bytes, path}``), a ``data:`` URL, a WebDataset tar member, or a list of these — is decoded and
verified once, then stored at ``<warehouse>/images/<sha256[:2]>/<sha256>.<format>`` (written to a temp
file and renamed: a reader never sees half an image; the same image twice is stored once). The table
cell becomes a reference struct (``refs.ref_type()``) or a list of them: image bytes never go into the
Parquet rows. Ingest streams record batches and decodes in a thread pool (PIL, hashlib and file writes
release the GIL), reading the next batch while the pool stores this one's images, so memory stays bounded
by two batches whatever the dataset's size. An image that does not decode is reported by row with its
reason (never its bytes) and stored as a reference without a hash that keeps its source, so training
reports it as a bad row, as it always did.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixtrain import objectstore
from mixtrain.errors import InvalidInput, MixtrainError, StorageError
from mixtrain.faults import folder_lock
from mixtrain.images.decode import decode_every_byte
from mixtrain.images.refs import IMAGES_DIR, REF_FIELDS, is_ref, stored_ref
from mixtrain.images.resolve import MAX_PIXELS, _bomb, _local_file, _shown, resolve_image, table_image_ref

# image, images, image_path, img, photo, input_image, image_url… — not image_id or image_caption
IMAGE_NAME = re.compile(r"^(.*_)?(image|img|picture|photo|pic)s?(_(path|paths|file|files|url|urls|uri|filename))?$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
MESSAGE_COLUMNS = ("messages", "conversations")
FORMAT_EXT = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tiff"}
CHUNK = 32  # payloads per pool task
REFRESH_AFTER = 1800  # s: half doctor's orphan age guard (ORPHAN_AGE) — see put_bytes
GIVE_UP_AFTER = 256  # rows of a text image column tried before an all-unreadable column is kept as text


# -- one image: decode, verify, store -------------------------------------------------------------------


def _ext(fmt: str | None) -> str:
    return FORMAT_EXT.get(fmt or "", (fmt or "img").lower())


def _check_bytes(data: bytes, shown: str, max_pixels: int) -> tuple[str, int, int]:
    """Decode ``data`` fully enough to trust it; (extension, width, height) or InvalidInput with the reason.

    A JPEG is decoded at 1/8 scale (libjpeg still entropy-decodes the whole stream, where truncation and
    corrupt data show); other formats get verify (PNG CRCs) and a full load — the bulk check's rule.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
            if w * h > max_pixels:
                raise _bomb(shown, w * h, max_pixels)
            decode_every_byte(im, data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb(shown, None, max_pixels) from err
    except MixtrainError:
        raise
    except Exception as err:  # PIL raises many types for bad data; all mean "not an image"
        detail = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "(the bytes)", str(err))
        raise InvalidInput(
            f"image {shown!r} does not decode as an image ({type(err).__name__}: {detail})",
            "replace it with a valid JPEG/PNG/WebP file, or drop the row",
        ) from err
    return _ext(fmt), w, h


_WRITER = os.urandom(4).hex()  # this process's temp-file tag: unique across hosts sharing one warehouse
_PART_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def put_bytes(warehouse: Path | str, data: bytes, ext: str) -> str:
    """Store ``data`` content-addressed (atomically; once however often it is put); its sha256.

    In an object-storage warehouse (``s3://``) one PUT is atomic by itself (an object appears whole or
    not at all); a HEAD first skips an image already stored — unless it is older than ``REFRESH_AFTER``:
    no lock spans machines, so `mixtrain doctor`'s sweep spares an image only by its age, and an ingest
    about to commit a reference to an old, currently unreferenced image must make it young again.

    On local disk the bytes go to a temp file only this writer can have opened (``O_EXCL``, tagged with
    the process and thread) in the image's own folder, then are renamed onto the final name: a reader, a
    crash or a concurrent writer of the same image never sees half an image under it. No fsync per image
    (there never was): the table commit is what makes a dataset exist, and doctor sweeps what no table
    holds. Plain ``os`` calls on strings — about five syscalls per new image; this runs once per image.
    """
    sha = hashlib.sha256(data).hexdigest()
    if isinstance(warehouse, str) and objectstore.is_remote(warehouse):
        import time

        uri = stored_ref(warehouse, sha, ext)
        found = objectstore.entry(uri)
        if found is None or found.mtime < time.time() - REFRESH_AFTER:
            objectstore.put_bytes(data, uri)
        return sha
    folder = os.path.join(warehouse, IMAGES_DIR, sha[:2])
    path = os.path.join(folder, f"{sha}.{ext}")
    if os.path.exists(path):
        return sha
    tmp = os.path.join(folder, f".{sha[:16]}.{_WRITER}.{threading.get_ident()}.part")
    try:
        fd = os.open(tmp, _PART_FLAGS, 0o600)
    except FileNotFoundError:  # the folder's first image
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, _PART_FLAGS, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return sha


Payload = tuple[str, object, str]  # (kind: path|url|bytes|dataurl, value, source shown in the ref)
Outcome = tuple[dict | None, str | None]  # (ref, None) or (None, reason)


def _store_one(payload: Payload, warehouse: str, cache: str, max_pixels: int) -> Outcome:
    kind, value, source = payload
    try:
        if kind == "path":
            path = _local_file(Path(str(value)).expanduser(), str(value))
            data = path.read_bytes()
            source = str(path)
        elif kind == "url":
            data = resolve_image(str(value), cache, max_pixels=max_pixels).read_bytes()
        elif kind == "dataurl":
            head, sep, b64 = str(value).partition(",")
            if not sep or not head.lower().startswith("data:image/") or not head.lower().endswith(";base64"):
                raise InvalidInput("malformed data URL", "encode it as data:image/<type>;base64,<payload>")
            try:
                data = base64.b64decode(b64, validate=True)
            except ValueError as err:
                raise InvalidInput(f"data URL is not valid base64 ({err})", "base64-encode the image bytes") from None
        else:
            data = bytes(value)  # type: ignore[call-overload]
        ext, w, h = _check_bytes(data, source, max_pixels)
        sha = put_bytes(warehouse if objectstore.is_remote(warehouse) else Path(warehouse), data, ext)
        return {"sha256": sha, "format": ext, "width": w, "height": h, "source": source}, None
    except StorageError:  # the warehouse refused the write (keys, permissions, unreachable): stop the ingest
        raise
    except MixtrainError as err:
        return None, " ".join(str(err).split())
    except OSError as err:
        if err.errno == 28:  # a full disk is no bad row: stop the whole ingest
            raise
        return None, f"image {source!r} cannot be used: {err.strerror or err}"
    except Exception as err:  # an odd payload is one bad row, never a crash of the whole ingest
        return None, f"image {source!r} cannot be used: {type(err).__name__}: {err}"


def _store_chunk(job) -> list[Outcome]:
    payloads, warehouse, cache, max_pixels = job
    return [_store_one(p, warehouse, cache, max_pixels) for p in payloads]


# -- columns: which hold images, and how a cell becomes payloads ----------------------------------------


def _is_hf_image(typ) -> bool:
    import pyarrow as pa

    return pa.types.is_struct(typ) and {typ.field(i).name for i in range(typ.num_fields)} >= {"bytes", "path"}


def _is_ref_type(typ) -> bool:
    import pyarrow as pa

    return pa.types.is_struct(typ) and {typ.field(i).name for i in range(typ.num_fields)} >= set(REF_FIELDS)


def _looks_like_image_text(v) -> bool:
    if not isinstance(v, str):
        return False
    t = v.strip().lower()
    return t.startswith("data:image/") or t.split("?", 1)[0].endswith(IMAGE_SUFFIXES)


def detect_image_columns(schema, sample: list[dict] | None = None) -> dict[str, str]:
    """``{column: "one" | "list" | "messages"}`` for the columns of ``schema`` that hold images.

    A column holds images when its values are HF Image structs, raw bytes or stored refs (whatever its
    name); or it is text (or a list of text) named like an image (image, images, image_path, img, photo…)
    or whose values are image paths/URLs/data URLs. ``messages``/``conversations`` hold conversations.
    """
    import pyarrow as pa

    out: dict[str, str] = {}
    rows = sample or []
    for f in schema:
        t, name = f.type, f.name
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
        inner = t.value_type if is_list else t
        if name.lower() in MESSAGE_COLUMNS and (is_list or pa.types.is_string(t) or pa.types.is_large_string(t)):
            out[name] = "messages"
        elif _is_hf_image(inner) or _is_ref_type(inner) or pa.types.is_binary(inner) or pa.types.is_large_binary(inner):
            out[name] = "list" if is_list else "one"
        elif pa.types.is_string(inner) or pa.types.is_large_string(inner):
            values = [r.get(name) for r in rows]
            flat = [x for v in values for x in (v if isinstance(v, list) else [v]) if isinstance(x, str) and x.strip()]
            named = bool(IMAGE_NAME.search(name.lower()))
            if (named and flat) or (flat and sum(map(_looks_like_image_text, flat)) * 2 > len(flat)):
                out[name] = "list" if is_list else "one"
    return out


@dataclass
class IngestReport:
    """What an ingest did: images stored (distinct) and bad images by row (never their bytes)."""

    images: int = 0
    bad: list[tuple[int, str, str, str]] = field(default_factory=list)  # (row, column, source, reason)
    columns: dict[str, str] = field(default_factory=dict)
    kept_as_text: list[str] = field(default_factory=list)  # image columns none of whose images could be read


@dataclass
class _Pending:
    """A batch whose images are being stored: what :meth:`Ingest.finish` needs to build its references."""

    batch: Any  # pyarrow.RecordBatch (pyarrow is imported on use)
    row0: int  # the batch's first row in the whole input (bad rows are reported by it)
    skipped: frozenset  # text columns given up on when the batch was planned: kept as they are
    plans: dict
    collect: Callable[[], list[Outcome]]


class Ingest:
    """Turn record batches holding images in any form into batches holding image references.

    Use as a context manager around the whole read: the pool is started once, and a shared lock on
    the image folder keeps a concurrent ``dataset delete`` from sweeping images not yet committed.
    """

    def __init__(
        self,
        warehouse: Path | str | None,  # a local folder, or an ``s3://`` warehouse URI
        cache_dir: Path | str,
        base_dir: str,
        *,
        keep_refs: bool = False,
        max_pixels: int = MAX_PIXELS,
        workers: int | None = None,
    ):
        self.warehouse, self.cache, self.base_dir = warehouse, str(cache_dir), base_dir
        self.keep_refs, self.max_pixels = keep_refs, max_pixels
        self.workers = workers or _cpus()
        self.report = IngestReport()
        self._pool: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        self._memo: dict[tuple[str, str], Outcome] = {}  # (kind, value) → outcome, for paths and URLs
        self._row = 0
        self._columns: dict[str, str] | None = None
        self._shas: set[str] = set()
        self.text_columns: dict[str, list] = {}  # text image column → its original arrays (strings: small)
        self.stored_in: dict[str, int] = {}  # image column → images stored from it
        self.tried: dict[str, int] = {}  # image column → rows looked at
        self.given_up: set[str] = set()  # text image columns none of whose first GIVE_UP_AFTER images was readable

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        return False

    def _lock(self) -> None:
        """Local only: no lock spans machines; in object storage the sweep's age guard protects an ingest."""
        if self._lock_fd is None and isinstance(self.warehouse, Path):
            folder = self.warehouse / IMAGES_DIR
            folder.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # the folder is the lock: no lock file
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    # -- per batch ---------------------------------------------------------------------------------
    def convert(self, batch):
        """One record batch in, the same rows out with every image column as references."""
        return self.finish(self.start(batch))

    def start(self, batch) -> _Pending:
        """Plan ``batch`` and hand its images to the pool; :meth:`finish` collects them. Starting the next
        batch before finishing this one lets the reader and the planner run while the pool decodes."""
        import pyarrow as pa

        if self._columns is None:
            rows = batch.slice(0, 64).to_pylist()
            self._columns = detect_image_columns(batch.schema, rows)
            self.report.columns = dict(self._columns)
        row0, skipped = self._row, frozenset(self.given_up)
        self._row += batch.num_rows
        if not self._columns:
            return _Pending(batch, row0, skipped, {}, lambda: [])
        payloads: list[Payload] = []
        plans: dict[str, list] = {}
        for name, kind in self._columns.items():
            if name in skipped:  # its text is kept as written (see ingest_batches)
                self.text_columns[name].append(batch.column(name))
                continue
            values = batch.column(name).to_pylist()
            typ = batch.schema.field(name).type
            if kind != "messages" and (
                pa.types.is_string(getattr(typ, "value_type", typ))
                or pa.types.is_large_string(getattr(typ, "value_type", typ))
            ):
                self.text_columns.setdefault(name, []).append(batch.column(name))
            if kind == "messages":
                plans[name] = [self._plan_messages(v, payloads) for v in values]
            else:
                plans[name] = [self._plan_cell(v, payloads) for v in values]
        return _Pending(batch, row0, skipped, plans, self._submit(payloads))

    def may_overlap(self) -> bool:
        """Whether the next batch may be planned before the last one's images are in: not while a text image
        column has had none stored (its first GIVE_UP_AFTER rows decide whether it is looked up at all)."""
        return self.keep_refs or all(self.stored_in.get(n) or n in self.given_up for n in self.text_columns)

    def finish(self, pending: _Pending):
        import pyarrow as pa

        from mixtrain.images.refs import ref_type

        batch, plans = pending.batch, pending.plans
        if not self._columns:
            return batch
        outcomes = pending.collect()
        arrays, names = [], []
        for name, plan in plans.items():
            self.tried[name] = self.tried.get(name, 0) + len(plan)
        for name in batch.schema.names:
            col_kind = self._columns.get(name)
            if col_kind is None or name in pending.skipped:
                arrays.append(batch.column(name))
                names.append(name)
                continue
            row0 = pending.row0
            filled = [self._fill(p, outcomes, name, row0 + i) for i, p in enumerate(plans[name])]
            if col_kind == "messages":
                arrays.append(pa.array([None if v is None else json.dumps(v) for v in filled], pa.string()))
            elif self.keep_refs and self._all_text(filled):
                typ = pa.string()
                arrays.append(pa.array(filled, pa.list_(typ) if col_kind == "list" else typ))
            else:
                typ = ref_type()
                filled = [self._as_ref(v) if col_kind == "one" else [self._as_ref(x) for x in v or []] for v in filled]
                arrays.append(pa.array(filled, pa.list_(typ) if col_kind == "list" else typ))
            names.append(name)
        for name in self.text_columns:
            if not self.keep_refs and not self.stored_in.get(name) and self.tried.get(name, 0) >= GIVE_UP_AFTER:
                self.given_up.add(name)  # not one of its first images is readable: stop looking them up
        return pa.RecordBatch.from_arrays(arrays, names=names)

    @staticmethod
    def _all_text(values) -> bool:
        return all(
            v is None or isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            for v in values
        )

    @staticmethod
    def _as_ref(v):
        if v is None or is_ref(v):
            return v
        return {"sha256": None, "format": None, "width": None, "height": None, "source": str(v)}

    def _payload(self, value) -> Payload | str | None:
        """A cell value as something to store, or (kept refs) the string to keep; None when empty."""
        if value is None:
            return None
        if isinstance(value, dict):
            if is_ref(value):
                return ("ref", value, str(value.get("source") or ""))
            data, path = value.get("bytes"), value.get("path")
            if data:
                return ("bytes", data, path if isinstance(path, str) and path else "bytes")
            return self._payload(path) if isinstance(path, str) else None
        if isinstance(value, bytes | bytearray | memoryview):
            return ("bytes", bytes(value), "bytes") if len(value) else None
        text = str(value).strip()
        if not text:
            return None
        if text.lower().startswith("data:"):
            return ("dataurl", text, "data URL")
        if "://" in text:
            if self.keep_refs:
                return text
            return ("url", text, _shown(text))  # resolve_image fetches http(s), reads file://, names other schemes
        ref = table_image_ref(text, [self.base_dir])  # relative paths: --image_root, else next to the file
        if not text.startswith(("/", "~")) and not os.path.lexists(ref):  # missing: name it where it was expected
            ref = os.path.normpath(os.path.join(self.base_dir, text))
        return ref if self.keep_refs else ("path", ref, ref)

    def _plan_cell(self, value, payloads: list[Payload]):
        if isinstance(value, list):
            return [self._plan_one(v, payloads) for v in value if v is not None]
        return self._plan_one(value, payloads)

    def _plan_one(self, value, payloads: list[Payload]):
        p = self._payload(value)
        if p is None or isinstance(p, str):
            if isinstance(p, str) and self.keep_refs:
                payloads.append(("keep", p, p))
                return ("slot", len(payloads) - 1, p)
            return p
        if p[0] == "ref":
            return p[1]
        payloads.append(p)
        return ("slot", len(payloads) - 1, p[2])

    def _plan_messages(self, value, payloads: list[Payload]):
        """A conversation (JSON text or nested lists) with each embedded image replaced by a plan slot."""
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return value  # not JSON: kept as the text it is

        def walk(node):
            if isinstance(node, list):
                return [walk(n) for n in node]
            if not isinstance(node, dict):
                return node
            typ = node.get("type")
            if typ == "image_url" or (typ is None and "image_url" in node and len(node) == 1):
                url = node.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                return {"type": "image", "image": self._plan_one(url, payloads)}
            if typ == "image":
                src = next((node[k] for k in ("image", "path", "url", "bytes") if node.get(k) is not None), None)
                return {"type": "image", "image": self._plan_one(src, payloads)}
            return {k: walk(v) for k, v in node.items()}

        return walk(value)

    def _fill(self, plan, outcomes: list[Outcome], column: str, row: int):
        if isinstance(plan, tuple) and len(plan) == 3 and plan[0] == "slot":
            ref, reason = outcomes[plan[1]]
            if ref is not None:
                self.stored_in[column] = self.stored_in.get(column, 0) + 1
            if ref is None:
                self.report.bad.append((row, column, plan[2], reason or "unusable"))
                return plan[2] if self.keep_refs else self._as_ref(plan[2])
            return ref
        if isinstance(plan, list):
            return [self._fill(p, outcomes, column, row) for p in plan]
        if isinstance(plan, dict):
            return {k: self._fill(v, outcomes, column, row) for k, v in plan.items()}
        return plan

    # -- the work ----------------------------------------------------------------------------------
    def _submit(self, payloads: list[Payload]) -> Callable[[], list[Outcome]]:
        """Start storing ``payloads`` in the pool; the returned call waits for their outcomes, in order."""
        if not payloads:
            return lambda: []
        if self.warehouse is None and any(p[0] != "keep" for p in payloads):
            raise InvalidInput("storing images needs a local warehouse", "use --keep_image_refs with object storage")
        self._lock()
        out: list[Outcome | None] = [None] * len(payloads)
        todo: list[int] = []
        for i, p in enumerate(payloads):
            key = (p[0], str(p[1])) if p[0] in ("path", "url", "keep") else None
            if key is not None and key in self._memo:
                out[i] = self._memo[key]
            else:
                todo.append(i)
        keep = [i for i in todo if payloads[i][0] == "keep"]
        store = [i for i in todo if payloads[i][0] != "keep"]
        if keep:
            from mixtrain.images.verify import verify_images

            good, bad = verify_images([str(payloads[i][1]) for i in keep], self.cache)
            reasons = {ref: why for _, ref, why in bad}
            for i in keep:
                ref = str(payloads[i][1])
                out[i] = (ref, None) if ref in good else (None, reasons.get(ref, "unusable"))  # type: ignore[assignment]
        chunks = [store[j : j + CHUNK] for j in range(0, len(store), CHUNK)]
        futures = []
        if chunks:
            if self._pool is None:
                # Threads, not processes: PIL decodes, hashlib hashes and file writes all release the GIL,
                # so threads use every core without pickling each image's bytes to a worker process.
                self._pool = ThreadPoolExecutor(max_workers=max(2, 2 * self.workers))
            wh, cache = str(self.warehouse), self.cache
            futures = [
                self._pool.submit(_store_chunk, ([payloads[i] for i in c], wh, cache, self.max_pixels)) for c in chunks
            ]

        def collect() -> list[Outcome]:
            for c, fut in zip(chunks, futures, strict=True):
                for i, outcome in zip(c, fut.result(), strict=True):
                    out[i] = outcome
                    if outcome[0] is not None and outcome[0]["sha256"] not in self._shas:
                        self._shas.add(outcome[0]["sha256"])
                        self.report.images += 1
            for i in todo:
                p = payloads[i]
                if p[0] in ("path", "url", "keep"):
                    self._memo[(p[0], str(p[1]))] = out[i]  # type: ignore[assignment]
            return out  # type: ignore[return-value]

        return collect


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def ingest_batches(batches: Iterator, ingest: Ingest):
    """Convert a stream of record batches; the converted (small: references only) table."""
    import pyarrow as pa

    out, pending = [], None
    for batch in batches:  # batch n+1 is read and planned while the pool decodes batch n
        if pending is not None and not ingest.may_overlap():
            out.append(ingest.finish(pending))
            pending = None
        started = ingest.start(batch)
        if pending is not None:
            out.append(ingest.finish(pending))
        pending = started
    if pending is not None:
        out.append(ingest.finish(pending))
    if not out:
        return None
    names = out[0].schema.names
    # Not one image of this text column could be read (e.g. paths of another machine): keep the text as
    # written, as before images were stored; training reports the rows, as it always did.
    kept = [n for n in ingest.text_columns if not ingest.stored_in.get(n) and not ingest.keep_refs]
    if kept:
        out = [b.drop_columns(kept) for b in out]
    schemas = {b.schema for b in out}
    if len(schemas) > 1:  # e.g. a column all-null in one batch and typed in another
        table = pa.concat_tables([pa.Table.from_batches([b]) for b in out], promote_options="permissive")
    else:
        table = pa.Table.from_batches(out)
    for name in kept:
        table = table.add_column(names.index(name), name, pa.chunked_array(ingest.text_columns[name]))
        ingest.report.kept_as_text.append(name)
    return table


# -- which images the tables reference; sweeping the rest -----------------------------------------------

_SHA_IN_JSON = re.compile(r'"sha256":\s*"([0-9a-f]{64})"')


def table_image_hashes(table) -> set[str]:
    """Every image hash any snapshot of an Iceberg table references (ref columns and conversations)."""
    import pyarrow as pa

    schema = table.schema().as_arrow()
    cols = []
    for f in schema:
        t = f.type
        inner = t.value_type if pa.types.is_list(t) or pa.types.is_large_list(t) else t
        if _is_ref_type(inner) or (f.name.lower() in MESSAGE_COLUMNS and pa.types.is_string(t)):
            cols.append(f.name)
    out: set[str] = set()
    if not cols:
        return out
    for snap in table.snapshots():
        data = table.scan(snapshot_id=snap.snapshot_id, selected_fields=tuple(cols)).to_arrow()
        for name in cols:
            col = data.column(name)
            t = col.type
            if pa.types.is_string(t):
                for v in col.to_pylist():
                    if v:
                        out.update(_SHA_IN_JSON.findall(v))
                continue
            if pa.types.is_list(t) or pa.types.is_large_list(t):
                col = pa.chunked_array([c.flatten() for c in col.chunks], t.value_type)
            # (chunks of several data files may differ in string width: cast each to one type)
            shas = pa.chunked_array([c.field("sha256").cast(pa.string()) for c in col.chunks], pa.string())
            out.update(s for s in shas.to_pylist() if s)
    return out


def referenced_image_hashes(datasets) -> set[str] | None:
    """The hashes every dataset of a ``DatasetStore`` references; None when a table cannot be read
    (then no image may be called unreferenced). The store hands over its tables' loaders, so this layer
    needs to know nothing of how the catalog names them."""
    out: set[str] = set()
    for load in datasets.table_loaders():
        try:
            out |= table_image_hashes(load())
        except Exception:
            return None
    return out


def stored_images(warehouse: Path) -> dict[str, Path]:
    """sha256 → file of every stored image (temp ``.part`` files are not images)."""
    root = warehouse / IMAGES_DIR
    out: dict[str, Path] = {}
    if root.is_dir():
        for sub in root.iterdir():
            if sub.is_dir():
                for p in sub.iterdir():
                    if not p.name.startswith(".") and p.is_file():
                        out[p.name.split(".", 1)[0]] = p
    return out


@contextlib.contextmanager
def sweep_lock(warehouse: Path):
    """Exclusive: no ingest is between storing its images and committing its table."""
    folder = warehouse / IMAGES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder):
        yield


def orphan_images(datasets, older_than_s: float = 0.0) -> list[Path]:
    """Stored images no dataset references (older than ``older_than_s``); [] if any table is unreadable."""
    import time

    wh = datasets.warehouse_dir()
    if wh is None or not (wh / IMAGES_DIR).is_dir():
        return []
    keep = referenced_image_hashes(datasets)
    if keep is None:
        return []
    cutoff = time.time() - older_than_s
    return sorted(p for sha, p in stored_images(wh).items() if sha not in keep and p.stat().st_mtime <= cutoff)


def remove_images(paths) -> int:
    n = 0
    for p in paths:
        with contextlib.suppress(OSError):
            Path(p).unlink()
            n += 1
            with contextlib.suppress(OSError):
                Path(p).parent.rmdir()  # only when empty
    return n
