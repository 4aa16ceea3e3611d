"""Datasets: list, one dataset (schema, snapshots, paginated rows with image thumbnails)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from mixtrain.errors import NotFound
from mixtrain.ui import thumbs
from mixtrain.ui.web import Int64, Page, render

router = APIRouter()
PAGE_ROWS = 50


def client(request: Request):
    return request.app.state.client


@router.get("/datasets")
def datasets(request: Request):
    return render(request, "datasets.html", datasets=client(request).list_dataset_infos())


def _snapshot(table, snapshot: str | None):
    if snapshot in (None, ""):
        return table.current_snapshot()
    try:
        snap = table.snapshot_by_id(int(snapshot))
    except ValueError:
        snap = None
    if snap is None:
        raise HTTPException(404, f"snapshot {snapshot} not found")
    return snap


def _total(snap) -> int:
    props = snap.summary.additional_properties if snap and snap.summary else {}
    return int(props.get("total-records", 0))


@lru_cache(maxsize=128)
def _page(c, name: str, snapshot_id: int, offset: int, size: int) -> tuple[list[str], list[dict]]:
    """One page of rows at an immutable snapshot — safe to cache for the life of the process."""
    table = c.get_dataset(name)
    arrow = table.scan(snapshot_id=snapshot_id, limit=offset + size).to_arrow()
    return arrow.column_names, arrow.slice(offset, size).to_pylist()


@lru_cache(maxsize=64)
@router.get("/datasets/{name}")
def dataset(request: Request, name: str, snapshot: str | None = None):
    c = client(request)
    summary = c.get_dataset_info(name)
    table = c.get_dataset(name)
    snap = _snapshot(table, snapshot)
    page = Page(request, _total(snap), PAGE_ROWS)
    columns: list[str] = []
    rows: list[dict] = []
    image_cols: set[str] = set()
    if snap is not None:
        columns, rows = _page(c, name, snap.snapshot_id, page.offset, PAGE_ROWS)
        image_cols = {col for col in columns if thumbs.is_image_column(col, [r[col] for r in rows])}
    return render(
        request,
        "dataset.html",
        ds=summary,
        versions=list(reversed(c.dataset_versions(name))),
        snap=snap,
        columns=columns,
        rows=rows,
        image_cols=image_cols,
        image_count=thumbs.image_count,
        image_label=thumbs.image_label,
        page=page,
    )


@router.get("/thumb/dataset/{name}/{snapshot_id}/{row}/{column}")
def dataset_thumb(request: Request, name: str, snapshot_id: Int64, row: Int64, column: str, k: Int64 = 0):
    """The ``k``-th image of a cell (a cell may hold a list of images)."""
    c = client(request)
    try:
        table = c.get_dataset(name)
    except NotFound:
        raise HTTPException(404) from None
    snap = table.snapshot_by_id(snapshot_id)
    if snap is None or not 0 <= row < _total(snap):
        raise HTTPException(404)
    offset = row // PAGE_ROWS * PAGE_ROWS
    columns, rows = _page(c, name, snapshot_id, offset, PAGE_ROWS)
    if column not in columns or row - offset >= len(rows):
        raise HTTPException(404)
    refs = c.dataset_image_refs(name, rows[row - offset][column])
    if not 0 <= k < len(refs):
        raise HTTPException(404)
    return _image_response(thumbs.thumbnail(refs[k], c.settings))


def _image_response(path: Path | None):
    if path is None:
        raise HTTPException(404, "image not found or not readable")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
