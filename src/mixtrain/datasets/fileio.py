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

Start-up: loading a table reads only its metadata JSON, which for a local warehouse is read here with
plain Python. PyArrow (and the pandas it pulls in, ~0.4 s) is imported on the first data, manifest or
object-storage file, so `dataset list/get/versions` start without it.
"""

from __future__ import annotations

import os
from typing import Any

from pyiceberg.io import FileIO, InputFile, OutputFile
from pyiceberg.typedef import EMPTY_DICT, Properties

from mixtrain.datasets.paths import dataset_of, resolve
from mixtrain.errors import Damaged


class HomeFileIO(FileIO):
    """PyArrow's FileIO with paths resolved against the home; a vanished file is one "damaged" line.

    A local table's metadata JSON is read without PyArrow; everything else goes to ``arrow`` (built on
    first use), a ``PyArrowFileIO`` with the same resolution and checks."""

    def __init__(self, properties: Properties = EMPTY_DICT):
        super().__init__(properties=properties)
        self._arrow: Any = None

    @property
    def arrow(self) -> Any:
        if self._arrow is None:
            from mixtrain.datasets.arrowio import ArrowHomeFileIO

            self._arrow = ArrowHomeFileIO(self.properties)
        return self._arrow

    def new_input(self, location: str) -> InputFile:
        path = _local_path(resolve(location, self.properties))
        if path is not None and path.endswith(".metadata.json"):
            return LocalMetadataFile(location, path)
        return self.arrow.new_input(location)

    def new_output(self, location: str) -> OutputFile:
        return self.arrow.new_output(location)

    def delete(self, location: str | InputFile | OutputFile) -> None:
        if isinstance(location, LocalMetadataFile):
            location = location.location
        self.arrow.delete(location)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrow": None}


def _local_path(location: str) -> str | None:
    """The file a local location names (``file://`` URI or absolute path), None for object storage."""
    if location.startswith("file://"):
        return location[len("file://") :]
    if location.startswith("/"):
        return location
    return None


class LocalMetadataFile(InputFile):
    """A table's metadata JSON in a local warehouse, read with plain Python (PyIceberg reads it whole)."""

    def __init__(self, location: str, path: str):
        super().__init__(location)
        self._path = path

    def __len__(self) -> int:
        return os.path.getsize(self._path)

    def exists(self) -> bool:
        return os.path.isfile(self._path)

    def open(self, seekable: bool = True) -> Any:
        try:
            return open(self._path, "rb")  # PyIceberg closes the stream it is handed
        except FileNotFoundError:
            raise damaged(self._path, "is missing") from None
        except PermissionError:
            raise damaged(self._path, "cannot be read (permission denied)") from None
        except IsADirectoryError:
            raise damaged(self._path, "is not a file") from None


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
