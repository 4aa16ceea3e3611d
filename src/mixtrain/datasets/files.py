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


def read_table(path: str | Path, progress: Callable[[int], None] | None = None):
    """Return a pyarrow Table; ``progress`` receives bytes read so far (text formats)."""
    import pyarrow as pa

    path = Path(path)
    fmt = detect_format(path)
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
            import pyarrow.json as pj

            table = pj.read_json(path, read_options=pj.ReadOptions(block_size=BLOCK_SIZE))
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
