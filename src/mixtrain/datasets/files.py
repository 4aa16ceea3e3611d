"""Read a user's CSV / TSV / Parquet / JSONL file into Arrow, rejecting what would make a bad table.

Checks happen before any table exists, so a rejected file leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mixtrain.errors import InvalidInput

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
BLOCK_SIZE = 64 << 20  # large blocks: type inference sees many rows, long cells fit


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(
            f"unsupported file type {path.suffix or '(none)'!r} for {path}",
            f"use one of {', '.join(sorted(FORMATS))}",
        )
    return fmt


def read_table(path: str | Path, progress: Callable[[int], None] | None = None, fmt: str | None = None):
    """Return a pyarrow Table; ``progress`` receives bytes read so far (text formats)."""
    import pyarrow as pa

    path = Path(path)
    fmt = fmt or detect_format(path)
    if not path.exists():
        raise InvalidInput(f"file not found: {path}", "check the path")
    if not path.is_file():
        raise InvalidInput(f"not a file: {path}", "pass a CSV, Parquet or JSONL file")
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from exc
    if size == 0:
        raise InvalidInput(f"{path} is empty", "the file needs a header row and at least one data row")
    try:
        if fmt in ("csv", "tsv"):
            table = _read_csv(path, "\t" if fmt == "tsv" else ",", progress)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            table = _read_jsonl(path)
    except InvalidInput:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot parse {path} as {fmt.upper()}: {first}", "fix the file and try again") from exc
    check_table(table, path)
    return table


def _read_csv(path: Path, delimiter: str, progress):
    import pyarrow as pa
    import pyarrow.csv as pc

    header = _csv_header(path, delimiter)
    _check_columns(header, path)
    read = pc.ReadOptions(block_size=BLOCK_SIZE, use_threads=True)
    parse = pc.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    # Keep text as text: "" stays an empty string, only real null markers become null.
    # Keep text as text: every CSV cell is stored as written ("007" stays "007", "true" stays "true",
    # "" stays ""). Types only come from self-describing formats (Parquet, JSONL).
    convert = pc.ConvertOptions(
        column_types={name: pa.string() for name in header}, strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    if progress is None:
        return pc.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    with open(path, "rb") as raw:
        return pc.read_csv(_Counting(raw, progress), read_options=read, parse_options=parse, convert_options=convert)


class _Counting(io.RawIOBase):
    """A file wrapper that reports bytes read, for the progress bar of large uploads."""

    def __init__(self, raw, report):
        self.raw, self.report, self.done = raw, report, 0

    def readable(self):
        return True

    def readinto(self, buf):
        n = self.raw.readinto(buf)
        self.done += n or 0
        self.report(self.done)
        return n


def _csv_header(path: Path, delimiter: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh, delimiter=delimiter), None)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text", "save the CSV as UTF-8") from exc
    if not row:
        raise InvalidInput(f"{path} has no header row", "the first line must name the columns")
    return row


def _check_columns(names: list[str], path: Path) -> None:
    empty = [i + 1 for i, n in enumerate(names) if not str(n).strip()]
    if empty:
        raise InvalidInput(f"{path} has empty column names at position(s) {empty}", "name every column in the header")
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise InvalidInput(f"{path} has duplicate column names: {', '.join(dupes)}", "give every column a unique name")


def check_table(table, path: Path) -> None:
    _check_columns(table.column_names, path)
    if table.num_rows == 0:
        raise InvalidInput(f"{path} has a header but no data rows", "add at least one row")
    all_null = [f.name for f in table.schema if _empty(table.column(f.name), f.type)]
    if all_null:
        raise InvalidInput(
            f"{path} has columns with no values: {', '.join(all_null)}",
            "fill them or remove them (an all-empty column has no type)",
        )


def _empty(column, typ) -> bool:
    """No value in any row: all null, or (text) all empty strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(typ) or column.null_count == len(column):
        return True
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return not pc.any(pc.greater(pc.utf8_length(column), 0)).as_py()
    return False


# -- every input shape `dataset create --file` accepts -------------------------------------------------

ALL_FORMATS = ("csv", "tsv", "parquet", "jsonl", "json", "hf", "imagefolder", "webdataset")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
BATCH_ROWS = 256  # rows per streamed batch: a few MB of embedded images at most


class Source:
    """A user's input, read as a stream of Arrow record batches (never all images in memory at once).

    ``base_dir`` is where relative image paths are looked up (``--image_root`` or next to the input);
    ``label`` names it in messages and in the dataset's recorded sources.
    """

    def __init__(self, fmt: str, label: str, base_dir: str, batches, paths: list[Path]):
        self.fmt, self.label, self.base_dir, self._batches, self.paths = fmt, label, base_dir, batches, paths

    def batches(self):
        return self._batches()


def sniff_format(path: Path) -> str:
    """The format of a file, folder or glob, from its name and (for folders) what it holds."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        matches = sorted(Path(p) for p in __import__("glob").glob(text))
        if not matches:
            raise InvalidInput(f"no files match {text}", "check the pattern")
        kinds = {sniff_format(m) for m in matches}
        if len(kinds) != 1:
            raise InvalidInput(f"{text} matches files of several formats ({', '.join(sorted(kinds))})", "narrow it")
        return kinds.pop()
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if "dataset_info.json" in names or "state.json" in names or "dataset_dict.json" in names:
            return "hf"
        if any(n.endswith((".parquet", ".pq")) for n in names):
            return "parquet"
        if any(n.endswith(".tar") for n in names):
            return "webdataset"
        if names & {"metadata.jsonl", "metadata.csv"} or any(n.lower().endswith(IMAGE_SUFFIXES) for n in names):
            return "imagefolder"
        raise InvalidInput(
            f"cannot tell what the folder {path} holds",
            "a folder must be a Parquet folder, a `save_to_disk` folder, WebDataset .tar shards or an imagefolder; "
            "or pass --format",
        )
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix == ".tar":
        return "webdataset"
    return detect_format(path)


def open_source(
    path: str | Path,
    fmt: str | None = None,
    *,
    image_root: str | Path | None = None,
    prompt: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Source:
    """Open any accepted input as a :class:`Source`; one-line errors for what cannot be read."""
    path = Path(path).expanduser()
    is_glob = any(ch in str(path) for ch in "*?[")
    if not is_glob and not path.exists():
        if fmt is None and path.suffix.lower() not in (".json", ".tar"):
            detect_format(path)  # an unsupported name says so first, as it always did
        raise InvalidInput(f"file not found: {path}", "check the path")
    if fmt is None:
        fmt = sniff_format(path)
    elif fmt not in ALL_FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}", f"use one of {', '.join(ALL_FORMATS)}")
    if image_root is not None:
        root = Path(image_root).expanduser()
        if not root.is_dir():
            raise InvalidInput(
                f"--image_root {root} is not a folder", "pass the folder relative image paths start from"
            )
        base = str(root.resolve())
    else:
        anchor = path if (not is_glob and path.is_dir()) else path.parent
        base = str(anchor.resolve())
    label = str(path if is_glob else path.resolve())
    if fmt in ("csv", "tsv", "jsonl") or (fmt == "parquet" and path.is_file()):
        if fmt == "parquet":
            return Source(fmt, label, base, lambda: _parquet_batches([path]), [path])
        table = read_table(path, progress, fmt)
        return Source(fmt, label, base, lambda: _table_batches(table, path), [path])
    if fmt == "parquet":
        files = _expand(path, (".parquet", ".pq"))
        return Source(fmt, label, base, lambda: _parquet_batches(files), files)
    if fmt == "json":
        return Source(fmt, label, base, lambda: _table_batches(_read_json_array(path), path), [path])
    if fmt == "hf":
        files = _hf_files(path)
        return Source(fmt, label, base, lambda: _arrow_stream_batches(files), files)
    if fmt == "imagefolder":
        return Source(fmt, label, base, lambda: _table_batches(_read_imagefolder(path, prompt), path), [path])
    files = _expand(path, (".tar",))
    return Source(fmt, label, base, lambda: _webdataset_batches(files), files)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InvalidInput(f"not a file: {path}", "pass a CSV, Parquet or JSONL file (or a dataset folder)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from exc


def _nonempty(path: Path) -> bool:
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path} is empty", "the file needs a header row and at least one data row")
    return True


def _expand(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    import glob

    if any(ch in str(path) for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path)))
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    else:
        files = [path]
    if not files:
        raise InvalidInput(f"no {'/'.join(suffixes)} files in {path}", "check the path")
    return files


def _table_batches(table, path: Path):
    check_table(table, path)
    yield from table.to_batches(max_chunksize=BATCH_ROWS)


def _parquet_batches(files: list[Path]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = None
    for f in files:
        _check_file(f)
        _nonempty(f)
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"cannot parse {f} as PARQUET: {_first(exc)}", "fix the file and try again") from exc
        if schema is None:
            schema = pf.schema_arrow
            _check_columns(schema.names, f)
        elif pf.schema_arrow.names != schema.names:
            raise InvalidInput(f"{f} has other columns than {files[0].name}", "every shard needs the same columns")
        yield from pf.iter_batches(batch_size=_batch_rows(pf))


BATCH_BYTES = 32 << 20  # about this much (uncompressed) per streamed batch: memory stays bounded for big photos


def _batch_rows(pf) -> int:
    """Rows per batch for ~BATCH_BYTES: many small thumbnails per batch, few large photos."""
    meta = pf.metadata
    if meta.num_row_groups == 0 or meta.num_rows == 0:
        return BATCH_ROWS
    group = meta.row_group(0)
    per_row = max(1, group.total_byte_size // max(1, group.num_rows))
    return max(16, min(4096, BATCH_BYTES // per_row))


def _arrow_stream_batches(files: list[Path]):
    import pyarrow as pa

    for f in files:
        try:
            reader = pa.ipc.open_stream(pa.memory_map(str(f)))
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(pa.memory_map(str(f)))
        if hasattr(reader, "__iter__"):
            for batch in reader:
                yield from _split(batch)
        else:  # a RecordBatchFileReader
            for i in range(reader.num_record_batches):
                yield from _split(reader.get_batch(i))


def _split(batch):
    for off in range(0, batch.num_rows, BATCH_ROWS):
        yield batch.slice(off, BATCH_ROWS)


def _hf_files(path: Path) -> list[Path]:
    """The Arrow files of a `datasets` `save_to_disk` folder (a DatasetDict folder: say which split)."""
    import json

    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        raise InvalidInput(
            f"{path} is a DatasetDict with splits {', '.join(splits)}",
            f"pass one split's folder, e.g. --file {path / (splits[0] if splits else 'train')}",
        )
    state = path / "state.json"
    if state.is_file():
        files = [path / f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]
    else:
        files = sorted(path.glob("*.arrow"))
    if not files:
        raise InvalidInput(f"no Arrow files in {path}", "pass the folder `Dataset.save_to_disk` wrote")
    return files


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_jsonl(path: Path):
    """Arrow's reader first (fast); rows it refuses — e.g. OpenAI vision JSONL, whose ``content`` mixes
    strings and part lists — are read as text, nested values kept as JSON text."""
    import json

    import pyarrow as pa
    import pyarrow.json as pj

    _check_file(path)
    _nonempty(path)
    try:
        return pj.read_json(path, read_options=pj.ReadOptions(block_size=BLOCK_SIZE))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        arrow_error = _first(exc)
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise InvalidInput(
                    f"cannot parse {path} as JSONL: line {n}: {err}", "fix the file and try again"
                ) from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{path} line {n} is not a JSON object", "each line must be one {...} row")
            rows.append(row)
    if not rows:
        raise InvalidInput(f"cannot parse {path} as JSONL: {arrow_error}", "fix the file and try again")
    return rows_to_table(rows, path)


def _read_json_array(path: Path):
    """A JSON array of row objects (LLaVA-Instruct's shape), or JSON Lines saved as .json."""
    import json

    _check_file(path)
    _nonempty(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except ValueError as err:
        try:
            return _read_jsonl(path)
        except InvalidInput:
            raise InvalidInput(f"cannot parse {path} as JSON: {err}", "fix the file and try again") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        raise InvalidInput(
            f"{path} holds a JSON object, not an array of rows",
            f"save the rows as a JSON array{f' (e.g. its {lists[0]!r} list)' if lists else ''}",
        )
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidInput(f"{path} must be a JSON array of objects", "each element must be one {...} row")
    if not data:
        raise InvalidInput(f"{path} has no rows", "add at least one row")
    return rows_to_table(data, path)


NESTED_AS_JSON = ("messages", "conversations")


def rows_to_table(rows: list[dict], path: Path):
    """Python rows → Arrow; a column Arrow cannot type (mixed shapes) or a conversation becomes JSON text."""
    import json

    import pyarrow as pa

    names = list(dict.fromkeys(k for r in rows for k in r))
    _check_columns(names, path)
    arrays = []
    for name in names:
        values = [r.get(name) for r in rows]
        if name in NESTED_AS_JSON and any(isinstance(v, list | dict) for v in values):
            arrays.append(pa.array([None if v is None else json.dumps(v) for v in values], pa.string()))
            continue
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(
                pa.array(
                    [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values], pa.string()
                )
            )
    return pa.table(arrays, names=names)


def _read_imagefolder(path: Path, prompt: str | None):
    """A `datasets` imagefolder: images plus ``metadata.jsonl`` / ``metadata.csv`` naming each ``file_name``."""
    import pyarrow as pa

    meta = next((path / n for n in ("metadata.jsonl", "metadata.csv") if (path / n).is_file()), None)
    if meta is None:
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        table = pa.table({"image": [str(p.relative_to(path)) for p in images]})
    else:
        table = _read_jsonl(meta) if meta.suffix == ".jsonl" else _read_csv(meta, ",", None)
        if "file_name" not in table.column_names:
            raise InvalidInput(f"{meta} has no file_name column", "name each row's image in a file_name column")
        table = table.rename_columns(["image" if n == "file_name" else n for n in table.column_names])
        other = [n for n in table.column_names if n != "image"]
        if "prompt" not in table.column_names and prompt is None and other == ["text"]:
            pass  # captions: the prompt is added below
    if "prompt" not in table.column_names:
        text_cols = [n for n in table.column_names if n != "image"]
        if prompt is None:
            raise InvalidInput(
                f"the imagefolder {path} has captions only ({', '.join(text_cols) or 'no text'}), no prompt",
                'pass a fixed prompt, e.g. --prompt "Describe the image."',
            )
        table = table.append_column("prompt", pa.array([prompt] * table.num_rows, pa.string()))
    return table


def _webdataset_batches(files: list[Path]):
    """WebDataset shards: members grouped by key (the path up to the first dot of its file name, as
    WebDataset groups them); an image member becomes the ``image`` column (several → ``images``, in
    member order), a ``.json`` member's keys become columns, ``.txt``/``.caption`` → ``text``."""
    import json
    import tarfile

    pending: list[dict] = []
    for f in files:
        _check_file(f)
        try:
            tar = tarfile.open(f)
        except (tarfile.TarError, OSError) as exc:
            raise InvalidInput(f"cannot read {f} as a tar shard: {exc}", "pass WebDataset .tar files") from None
        with tar:
            sample: dict = {}
            key = None
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                k = f"{folder}/{stem}" if folder else stem
                if k != key:
                    if sample:
                        pending.append(sample)
                    sample, key = {"__key__": k}, k
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                ext = ext.lower()
                if ext.rsplit(".", 1)[-1] in ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"):
                    sample.setdefault("__images__", []).append({"bytes": data, "path": f"tar:{f.name}#{member.name}"})
                elif ext == "json":
                    try:
                        obj = json.loads(data)
                    except ValueError as err:
                        raise InvalidInput(f"{f}#{member.name} is not JSON: {err}", "fix the shard") from None
                    sample.update(obj if isinstance(obj, dict) else {"json": obj})
                elif ext in ("txt", "text", "caption"):
                    sample["text"] = data.decode("utf-8", "replace").strip()
                elif ext == "cls":
                    sample["cls"] = data.decode("utf-8", "replace").strip()
                if len(pending) >= BATCH_ROWS:
                    yield _samples_batch(pending, f)
                    pending = []
            if sample:
                pending.append(sample)
    if pending:
        yield _samples_batch(pending, files[-1])


def _samples_batch(samples: list[dict], path: Path):
    """WebDataset samples → one record batch; images as `datasets`' Image struct (bytes + a tar: path)."""
    import pyarrow as pa

    hf_image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    many = any(len(s.get("__images__", [])) > 1 for s in samples)
    rows = []
    for s in samples:
        row = {k: v for k, v in s.items() if k != "__images__"}
        images = s.get("__images__", [])
        row["images" if many else "image"] = images if many else (images[0] if images else None)
        rows.append(row)
    image_col = "images" if many else "image"
    text = rows_to_table([{k: v for k, v in r.items() if k != image_col} for r in rows], path)
    col = pa.array([r[image_col] for r in rows], pa.list_(hf_image) if many else hf_image)
    columns = [c.combine_chunks() for c in text.columns]
    return pa.RecordBatch.from_arrays([col, *columns], names=[image_col, *text.column_names])
