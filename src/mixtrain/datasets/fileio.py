"""Where a dataset's files are: paths resolved against the home's warehouse when they are opened.

Why: Iceberg stores absolute paths everywhere (catalog row, metadata JSON, manifest lists, manifests),
so a moved or copied home used to read — and ``doctor --fix`` to delete — files by their old spelling.
PyIceberg 0.12 hands every path to the catalog's FileIO (``py-io-impl``) and nothing else, so this
FileIO is where a home becomes relocatable:

- tables created by mixtrain get a *relative* location (``mixtrain/<name>.<id>``): every path PyIceberg
  writes for them (metadata, manifest lists, manifests, data files) is relative to the warehouse, and
  resolved against the warehouse of the home that opens them;
- tables written before that keep absolute paths; the warehouse prefixes they were written under are
  recorded in the catalog (namespace property ``mixtrain.former-warehouses``, found on first open) and
  mapped to the current warehouse.

Tried and not taken: rewriting every metadata file and manifest (Avro) on a move — PyIceberg has no
path-rewrite API, a half-done rewrite is worse than none, and a copy would still need it twice.
A relative location is not portable to other Iceberg engines; mixtrain reads its tables only through
this FileIO (`dataset create --iceberg` tables keep their own absolute paths untouched).
"""

from __future__ import annotations

from typing import Any

from pyiceberg.io.pyarrow import BUFFER_SIZE, ONE_MEGABYTE, PyArrowFile, PyArrowFileIO
from pyiceberg.typedef import EMPTY_DICT, Properties

from mixtrain.datasets.paths import dataset_of, resolve
from mixtrain.errors import Damaged


class HomeFileIO(PyArrowFileIO):
    """PyArrow's FileIO with paths resolved against the home; a vanished file is one "damaged" line."""

    @staticmethod
    def parse_location(location: str, properties: Properties = EMPTY_DICT) -> tuple[str, str, str]:
        return PyArrowFileIO.parse_location(resolve(location, properties), properties)

    def new_input(self, location: str) -> PyArrowFile:
        scheme, netloc, path = self.parse_location(location, self.properties)
        return _File(
            fs=self.fs_by_scheme(scheme, netloc),
            location=location,
            path=path,
            buffer_size=int(self.properties.get(BUFFER_SIZE, ONE_MEGABYTE)),
        )


class _File(PyArrowFile):
    def open(self, seekable: bool = True) -> Any:
        try:
            stream = super().open(seekable)
        except FileNotFoundError:
            raise damaged(self._path, "is missing") from None
        except PermissionError:
            raise damaged(self._path, "cannot be read (permission denied)") from None
        if seekable and self._path.endswith((".parquet", ".avro")) and not _intact(stream, self._path):
            stream.close()
            raise damaged(self._path, "is corrupt (truncated or overwritten)")
        return stream


def _intact(stream: Any, path: str) -> bool:
    """The format's magic bytes where they belong: a truncated or garbled file is caught before a
    decoder meets it (PyArrow and PyIceberg's Avro reader would raise anything from ArrowInvalid to
    SystemError). Two small reads of a file about to be read anyway."""
    try:
        size = stream.size()
        if path.endswith(".avro"):
            ok = size >= 4 and stream.read(4) == b"Obj\x01"
        else:
            ok = size >= 12 and stream.read(4) == b"PAR1"
            if ok:
                stream.seek(size - 4)
                ok = stream.read(4) == b"PAR1"
        stream.seek(0)
        return ok
    except OSError:
        return False


def damaged(path: str, state: str) -> Damaged:
    name = dataset_of(path)
    if name is None:
        return Damaged(
            f"a dataset is damaged: its file {path} {state}",
            "restore the warehouse folder from a backup; `mixtrain doctor` lists what is damaged",
        )
    return Damaged(
        f"dataset {name!r} is damaged: its file {path} {state}",
        f"restore the warehouse folder from a backup, or `mixtrain dataset delete {name} -y`",
    )
