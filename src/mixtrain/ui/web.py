"""Shared page helpers: the Jinja2 environment, formatting filters, pagination, error pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from annotated_types import Ge, Le
from fastapi import Request
from fastapi.templating import Jinja2Templates

from mixtrain.display import fmt_duration, fmt_time
from mixtrain.records import json_default, shown_user, status_tone

# A number in a URL that SQLite can hold: a larger one is "not found" (404) rather than an OverflowError (500).
Int64 = Annotated[int, Ge(-(2**63)), Le(2**63 - 1)]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def fmt_num(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def to_json(v) -> str:
    return json.dumps(v, indent=2, default=json_default, sort_keys=True)


def short_json(v, limit: int = 120) -> str:
    text = json.dumps(v, default=json_default, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


templates.env.filters.update(
    time=fmt_time, duration=fmt_duration, num=fmt_num, json=to_json, short_json=short_json, user=shown_user
)
templates.env.globals.update(status_class=status_tone)


def render(request: Request, template: str, status_code: int = 200, **context):
    page = template.split("_")[0].split(".")[0]
    context.setdefault("nav", "workflows" if page == "run" else page)
    context["csrf"] = request.state.csrf
    context["signed_in_with_token"] = request.app.state.guard.token is not None
    return templates.TemplateResponse(request, template, context, status_code=status_code)


class Page:
    """Server-side pagination: ``?page=N`` (1-based) over ``total`` items, ``size`` per page."""

    def __init__(self, request: Request, total: int | None, size: int = 50):
        try:
            self.number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            self.number = 1
        self.size = size
        self.total = total
        self.pages = max(1, -(-total // size)) if total is not None else None
        if self.pages is not None:
            self.number = min(self.number, self.pages)
        self.offset = (self.number - 1) * size
        self._request = request

    def url(self, number: int) -> str:
        params = dict(self._request.query_params)
        params["page"] = str(number)
        from urllib.parse import urlencode

        return f"{self._request.url.path}?{urlencode(params)}"

    @property
    def has_next(self) -> bool:
        return self.pages is None or self.number < self.pages
