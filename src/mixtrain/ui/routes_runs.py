"""Workflows and runs: inputs, paginated run lists, the run form, a run's live log, curves, Cancel."""

from __future__ import annotations

import html
import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from mixtrain.errors import Conflict, MixtrainError
from mixtrain.ui import charts, forms
from mixtrain.ui.web import Int64, Page, render
from mixtrain.workflows.runfolder import RunFolder

router = APIRouter()
RUNS_PER_PAGE = 25
LOG_TAIL = 256 * 1024  # the page shows the last 256 KiB; the rest stays in run.log
LOG_CHUNK = 1024 * 1024


def client(request: Request):
    return request.app.state.client


@router.get("/workflows")
def workflows(request: Request):
    return render(request, "workflows.html", workflows=client(request).list_workflows())


@router.get("/workflows/{name}")
def workflow(request: Request, name: str):
    c = client(request)
    c.reconcile_runs(name)
    wf = c.get_workflow(name)
    total = next((w["runs"] for w in c.list_workflows() if w["name"] == name), 0)
    page = Page(request, total, RUNS_PER_PAGE)
    runs = c.list_runs(name, RUNS_PER_PAGE, page.offset)
    return render(request, "workflow.html", wf=wf, runs=runs, page=page)


@router.get("/workflows/{name}/run")
def run_form(request: Request, name: str):
    wf = client(request).get_workflow(name)
    return render(request, "run_form.html", wf=wf, fields=forms.fields(wf["inputs"]), error=None)


@router.post("/workflows/{name}/run")
async def start_run(request: Request, name: str):
    """Start a run, or show the form again (200: the page rendered; it carries the errors) with each problem at its field."""
    c = client(request)
    wf = c.get_workflow(name)
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf"}
    typed, errors = forms.parse(wf["inputs"], form)
    if not errors:
        try:
            run = c.start_run(name, typed)
        except MixtrainError as exc:
            return render(request, "run_form.html", wf=wf, fields=forms.fields(wf["inputs"], form), error=str(exc))
        return RedirectResponse(f"/runs/{name}/{run['number']}", status_code=303)
    return render(request, "run_form.html", wf=wf, fields=forms.fields(wf["inputs"], form, errors), error=None)


def _read(path: Path | None) -> str | None:
    """A file the run's workflow declared (its data report, its config), if it declared one."""
    if path is None:
        return None
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _metrics(c, name: str, number: int) -> list[dict]:
    return c.get_run_metrics(name, number)


def _log_start(path: Path) -> tuple[str, int, bool]:
    """(text, next offset, truncated): the tail of the log, cut at a line start."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", 0, False
    start = max(0, size - LOG_TAIL)
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(size - start)
    if start:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else data
    return data.decode("utf-8", errors="replace"), size, bool(start)


@router.get("/runs/{name}/{number}")
def run_page(request: Request, name: str, number: Int64, note: str | None = None):
    c = client(request)
    c.reconcile_runs(name, number)
    run = c.get_run(name, number)
    log, offset, truncated = _log_start(Path(run["log_path"]))
    metrics = _metrics(c, name, number)
    folder = RunFolder(run["run_dir"])
    report = _read(folder.file("report"))
    return render(
        request,
        "run.html",
        run=run,
        active=run.status.is_active,
        log=log,
        log_offset=offset,
        log_truncated=truncated,
        metrics=metrics,
        chart=charts.loss_svg(metrics),
        report=json.loads(report) if report else None,
        yaml=_read(folder.file("config")),
        note=note,
        nav="workflows",
    )


@router.get("/runs/{name}/{number}/log")
def run_log(request: Request, name: str, number: Int64, offset: Int64 = 0):
    """The log since ``offset`` (an htmx fragment): appended to the page, with the next poll."""
    c = client(request)
    c.reconcile_runs(name, number)
    run = c.get_run(name, number)
    active = run.status.is_active
    data = b""
    try:
        with open(run["log_path"], "rb") as fh:
            fh.seek(max(0, offset))
            data = fh.read(LOG_CHUNK)
    except OSError:
        pass
    if active and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        data = data[: cut + 1] if cut >= 0 else b""  # never split a line (or a UTF-8 character) while it is written
    next_offset = max(0, offset) + len(data)
    parts = [f'<span hx-swap-oob="beforeend:#log">{html.escape(data.decode("utf-8", errors="replace"))}</span>']
    if active or len(data) == LOG_CHUNK:
        parts.append(_poller(name, number, next_offset))
    response = HTMLResponse("".join(parts))
    if not active and len(data) < LOG_CHUNK:
        response.headers["HX-Refresh"] = "true"  # the run has ended: reload for its final status, curves and report
    return response


def _poller(name: str, number: int, offset: int) -> str:
    return (
        f'<div id="log-poll" hx-get="/runs/{name}/{number}/log?offset={offset}" '
        'hx-trigger="every 1s" hx-swap="outerHTML"></div>'
    )


@router.get("/runs/{name}/{number}/chart")
def run_chart(request: Request, name: str, number: Int64):
    svg = charts.loss_svg(_metrics(client(request), name, number))
    return HTMLResponse(svg or '<p class="muted">No metrics recorded yet.</p>')


@router.post("/runs/{name}/{number}/cancel")
def cancel(request: Request, name: str, number: Int64):
    c = client(request)
    try:
        info = c.cancel_run(name, number)
        note = f"run #{number} {info['status']}"
    except Conflict as exc:
        note = exc.what
    from urllib.parse import quote

    return RedirectResponse(f"/runs/{name}/{number}?note={quote(note)}", status_code=303)
