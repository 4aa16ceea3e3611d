"""Secrets: names and dates only. A value goes in through a form and never comes back out."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from mixtrain.errors import MixtrainError
from mixtrain.ui.web import render

router = APIRouter()


def client(request: Request):
    return request.app.state.client


@router.get("/secrets")
def secrets(request: Request, note: str | None = None):
    return render(request, "secrets.html", secrets=client(request).list_secrets(), note=note, error=None, name="")


@router.post("/secrets")
async def create(request: Request):
    c = client(request)
    form = await request.form()
    name, value = str(form.get("name") or "").strip(), str(form.get("value") or "")
    try:
        if not value:
            raise MixtrainError("the value is empty", "type the secret's value")
        c.create_secret(name, value)
    except MixtrainError as exc:  # the value is never echoed back into the page
        return render(request, "secrets.html", secrets=c.list_secrets(), note=None, error=str(exc), name=name)
    return RedirectResponse(f"/secrets?note={quote('created ' + name)}", status_code=303)


@router.post("/secrets/{name}/delete")
def delete(request: Request, name: str):
    client(request).delete_secret(name)
    return RedirectResponse(f"/secrets?note={quote('deleted ' + name)}", status_code=303)
