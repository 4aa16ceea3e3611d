"""Evaluations: scores per model, and the side-by-side grid with a "disagreements only" filter."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from mixtrain.errors import NotFound
from mixtrain.ui import evals_view, thumbs
from mixtrain.ui.routes_datasets import _image_response
from mixtrain.ui.web import Int64, Page, render

router = APIRouter()
GRID_ROWS = 20


def client(request: Request):
    return request.app.state.client


@router.get("/evals")
def evals(request: Request):
    return render(request, "evals.html", evals=evals_view.list_evals(client(request)))


@router.get("/evals/{name}")
def eval_page(request: Request, name: str, disagreements: Int64 = 0):
    c = client(request)
    info = c.get_eval_info(name)
    rows = evals_view.results(c, info) if info.get("status") == "completed" else []
    shown = [r for r in rows if r["disagree"]] if disagreements else rows
    page = Page(request, len(shown), GRID_ROWS)
    return render(
        request,
        "eval.html",
        ev=info,
        rows=shown[page.offset : page.offset + GRID_ROWS],
        page=page,
        total=len(rows),
        disagree_count=sum(r["disagree"] for r in rows),
        disagreements=bool(disagreements),
    )


@router.get("/thumb/eval/{name}/{index}")
def eval_thumb(request: Request, name: str, index: Int64, k: Int64 = 0):
    """The ``k``-th image of a results row (multi-image rows keep every image in ``images``)."""
    c = client(request)
    try:
        info = c.get_eval_info(name)
    except NotFound:
        raise HTTPException(404) from None
    rows = evals_view.results(c, info) if info.get("status") == "completed" else []
    if not 0 <= index < len(rows) or not isinstance(rows[index]["image"], str):
        raise HTTPException(404)
    refs = c.dataset_image_refs(info.dataset, rows[index]["images"])
    if not 0 <= k < len(refs):
        raise HTTPException(404)
    return _image_response(thumbs.thumbnail(refs[k], c.settings))
