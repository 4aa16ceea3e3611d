"""Models (versions, lineage, eval scores) and the playground (ask one or two models about an image)."""

from __future__ import annotations

import threading

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from mixtrain.errors import MixtrainError
from mixtrain.ui import thumbs
from mixtrain.ui.web import Int64, render

router = APIRouter()
_infer_lock = threading.Lock()  # one generation at a time: models are large and share the CPU/GPU


def client(request: Request):
    return request.app.state.client


@router.get("/models")
def models(request: Request):
    return render(request, "models.html", models=client(request).list_models())


@router.get("/models/{name}")
def model(request: Request, name: str, version: Int64 | None = None):
    c = client(request)
    m = c.get_model_info(name, version)
    return render(
        request,
        "model.html",
        m=m,
        versions=list(reversed(c.model_versions(name))),
        scores=c.model_evals(name),
    )


@router.get("/playground")
def playground(request: Request):
    return render(
        request, "playground.html", models=client(request).list_models(), form={}, answers=[], error=None, image=None
    )


@router.post("/playground")
async def ask(request: Request):
    c = client(request)
    form = await request.form()
    chosen = [str(form.get(k) or "").strip() for k in ("model_a", "model_b")]
    chosen = list(dict.fromkeys(m for m in chosen if m))
    prompt = str(form.get("prompt") or "").strip()
    upload = form.get("image_file")
    pasted = str(form.get("image_ref") or "").strip()
    shown = {
        "model_a": chosen[0] if chosen else "",
        "model_b": chosen[1] if len(chosen) > 1 else "",
        "prompt": prompt,
        "image_ref": pasted,
    }
    error, answers, image = None, [], None
    try:
        if not chosen:
            raise MixtrainError("pick a model", "choose one in the first list")
        if not prompt:
            raise MixtrainError("type a prompt", "e.g. What colour is the shape?")
        data = await upload.read() if upload is not None and hasattr(upload, "read") else b""
        if data:
            image = thumbs.save_upload(data, c.settings)
        elif pasted:
            image = _copy_pasted(pasted, c.settings)
        else:
            raise MixtrainError("no image", "upload an image file or paste a path or URL")
        answers = await _answer(c, chosen, str(image), prompt)
    except MixtrainError as exc:
        error = str(exc)
    return render(
        request,
        "playground.html",
        models=c.list_models(),
        form=shown,
        answers=answers,
        error=error,
        image=image.name if image else None,
    )


def _copy_pasted(ref: str, settings):
    """A pasted path or URL is resolved like `model run` does, then kept as an upload (so the page can show it)."""
    from mixtrain.images import resolve_image

    return thumbs.save_upload(resolve_image(ref, settings.image_cache).read_bytes(), settings)


async def _answer(c, names: list[str], image: str, prompt: str) -> list[dict]:
    from starlette.concurrency import run_in_threadpool

    def work():
        with _infer_lock:
            return [c.run_model(n, {"image": image, "prompt": prompt}) for n in names]

    return await run_in_threadpool(work)


@router.get("/uploads/{filename}")
def uploaded(request: Request, filename: str):
    if not thumbs.UPLOAD_NAME.match(filename):
        raise HTTPException(404)
    path = thumbs.uploads_dir(client(request).settings) / filename
    if not path.is_file():
        raise HTTPException(404)
    return FileResponse(path, media_type="image/png")
