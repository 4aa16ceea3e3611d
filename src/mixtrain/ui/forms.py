"""The run form: fields generated from a workflow's input spec, checked field by field.

Coercion is the workflow engine's own (``workflows.spec.coerce``), so the form accepts exactly what
`mixtrain workflow run NAME --input value` accepts, and each problem is shown next to its field.
"""

from __future__ import annotations

import json

from mixtrain.errors import InvalidInput
from mixtrain.workflows.spec import coerce


def widget(inp: dict) -> str:
    if inp.get("choices"):
        return "select"
    return {"bool": "select", "int": "number", "float": "text", "list": "textarea", "dict": "textarea"}.get(
        inp["type"], "text"
    )


def shown(inp: dict, value) -> str:
    """A value as the form shows it (JSON for lists and dicts, true/false for booleans)."""
    if value is None:
        return ""
    if inp["type"] in ("list", "dict"):
        return json.dumps(value)
    if inp["type"] == "bool":
        return "true" if value else "false"
    return str(value)


def fields(
    inputs: list[dict], values: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> list[dict]:
    out = []
    for inp in inputs:
        options = (
            [shown(inp, c) for c in inp["choices"]]
            if inp.get("choices")
            else (["true", "false"] if inp["type"] == "bool" else None)
        )
        value = (values or {}).get(inp["name"])
        out.append(
            {
                **inp,
                "widget": widget(inp),
                "options": options,
                "value": value if value is not None else ("" if inp["required"] else shown(inp, inp["default"])),
                "error": (errors or {}).get(inp["name"]),
            }
        )
    return out


def parse(inputs: list[dict], form: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """(typed inputs, {field: error}). An empty optional field keeps the workflow's default."""
    typed, errors = {}, {}
    for inp in inputs:
        text = (form.get(inp["name"]) or "").strip()
        if not text:
            if inp["required"]:
                errors[inp["name"]] = "required — enter a value"
            continue
        try:
            typed[inp["name"]] = coerce(inp, text, from_text=True)
        except InvalidInput as exc:
            errors[inp["name"]] = str(exc).removeprefix(f"--{inp['name']}: ")
    return typed, errors
