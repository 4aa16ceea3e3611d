"""The PyArrow half of the home's FileIO (see ``fileio``): data files, manifests, object storage.

Imported on first use only: PyArrow and pandas cost ~0.4 s of start-up that listing datasets never needs.
"""

from __future__ import annotations

from typing import Any

from pyiceberg.io.pyarrow import BUFFER_SIZE, ONE_MEGABYTE, PyArrowFile, PyArrowFileIO
from pyiceberg.typedef import EMPTY_DICT, Properties

from mixtrain.datasets.fileio import damaged
from mixtrain.datasets.paths import resolve


class ArrowHomeFileIO(PyArrowFileIO):
    """PyArrow's FileIO with paths resolved against the home; a vanished or truncated file is "damaged"."""

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
