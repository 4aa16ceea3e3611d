"""What a dataset's image cell holds, and the one rule that turns any such cell into image references.

After ``dataset create`` an image cell is a stored reference — ``struct<sha256, format, width, height,
source>`` — or a list of them; the bytes live content-addressed at
``<warehouse>/images/<sha256[:2]>/<sha256>.<format>``. A dataset created with ``--keep_image_refs`` holds
strings (a path or URL) instead. Every consumer (prepare, evals, ``model run --inputs-file``, dashboard
thumbnails) calls :func:`cell_refs` and hands the result to ``resolve_image`` / ``load_image``.
"""

from __future__ import annotations

from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.images.resolve import table_image_ref

IMAGES_DIR = "images"
REF_FIELDS = ("sha256", "format", "width", "height", "source")


def ref_type():
    """The Arrow type of one stored image reference (pyarrow imported on use: the CLI stays fast)."""
    import pyarrow as pa

    return pa.struct(
        [
            ("sha256", pa.string()),
            ("format", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("source", pa.string()),
        ]
    )


def stored_path(warehouse: Path | str, sha256: str, fmt: str) -> Path:
    """Where the bytes of a stored image live (relative to the warehouse: a moved home keeps working)."""
    return Path(warehouse) / IMAGES_DIR / sha256[:2] / f"{sha256}.{fmt}"


def stored_ref(warehouse: Path | str, sha256: str, fmt: str) -> str:
    """A stored image as a reference ``resolve_image`` takes: a local path, or in an object-storage
    warehouse its ``s3://`` URI (downloaded once into the image cache and checked against its hash)."""
    if isinstance(warehouse, str) and warehouse.startswith("s3://"):
        return f"{warehouse.rstrip('/')}/{IMAGES_DIR}/{sha256[:2]}/{sha256}.{fmt}"
    return str(stored_path(warehouse, sha256, fmt))


def is_ref(value) -> bool:
    """A stored image reference (a dict with the contract's keys; a sha256 of None marks an image that did
    not decode at create and keeps its original source)."""
    return isinstance(value, dict) and "sha256" in value and "source" in value


def cell_refs(cell, *, warehouse: Path | str | None, source_dirs: list[str]) -> list[str]:
    """Every image of a table cell as a string ``resolve_image`` / ``load_image`` accept.

    None or empty → ``[]``; a string → ``[that ref]``, a relative path looked up like ``table_image_ref``;
    a stored reference → ``[absolute path of the stored file]`` (its ``s3://`` URI in a team warehouse; or its original source when it did not
    decode at create, so the row's image check gives the reason); an HF Image struct with a path →
    that path; a list → the concatenation.
    """
    if cell is None:
        return []
    if isinstance(cell, str):
        ref = table_image_ref(cell, source_dirs)
        return [ref] if ref else []
    if isinstance(cell, dict):
        if is_ref(cell):
            sha, fmt = cell.get("sha256"), cell.get("format")
            if sha and fmt:
                if warehouse is None:
                    raise InvalidInput(
                        "a stored image reference needs the warehouse folder",
                        "read the dataset through mixtrain (a local warehouse)",
                    )
                return [stored_ref(warehouse, sha, fmt)]
            return cell_refs(cell.get("source"), warehouse=warehouse, source_dirs=source_dirs)
        if isinstance(cell.get("path"), str):  # an HF Image struct read as-is (e.g. a registered table)
            return cell_refs(cell["path"], warehouse=warehouse, source_dirs=source_dirs)
        return []
    if isinstance(cell, list | tuple):
        out: list[str] = []
        for item in cell:
            out.extend(cell_refs(item, warehouse=warehouse, source_dirs=source_dirs))
        return out
    text = str(cell).strip()
    return cell_refs(text, warehouse=warehouse, source_dirs=source_dirs) if text else []


def ref_label(cell) -> str:
    """A short, byte-free text for a cell in messages and reports (never an image's bytes)."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell if len(cell) <= 200 else cell[:100] + "…"
    if isinstance(cell, dict):
        if is_ref(cell):
            return str(cell.get("source") or cell.get("sha256") or "")
        if isinstance(cell.get("path"), str) and cell["path"]:
            return cell["path"]
        return "<image bytes>" if cell.get("bytes") else "<empty image>"
    if isinstance(cell, bytes | bytearray):
        return f"<{len(cell):,} image bytes>"
    if isinstance(cell, list | tuple):
        return ", ".join(ref_label(c) for c in cell)
    return str(cell)[:200]
