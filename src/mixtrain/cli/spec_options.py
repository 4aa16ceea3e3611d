"""CLI options derived from a pydantic parameter schema (``EvalSpec``): one option per field, its help
the field's description, its default the field's default — the schema is the one place they are written.

Each field ``snake_name`` takes ``--snake_name`` and ``--snake-name`` (as `workflow run` inputs do); a
field may add a short flag (``json_schema_extra={"short": "-c"}``). A field that holds a list is given
as one comma-separated value; a dict field (``"json": True``) as JSON text. ``collect`` turns the parsed
values back into the schema's keywords, and the schema does every check.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer
from pydantic import BaseModel

from mixtrain.cli.common import json_arg


def _extra(field) -> dict:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _cli_type(annotation) -> Any:
    """What the option parses: text for lists (comma-separated) and dicts (JSON), else the field's type."""
    optional = type(None) in typing.get_args(annotation)
    base = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation) if optional else annotation
    if typing.get_origin(base) in (list, dict):
        base = str
    return base | None if optional else base


def parameters(schema: type[BaseModel], skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    out = []
    for name, field in schema.model_fields.items():
        if name in skip:  # given another way (e.g. the command's own argument)
            continue
        flags = list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]))
        if _extra(field).get("short"):
            flags.append(_extra(field)["short"])
        default = ... if field.is_required() else field.default
        out.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(default, *flags, help=field.description),
                annotation=_cli_type(field.annotation),
            )
        )
    return out


def command_with(schema: type[BaseModel], fixed: Callable, skip: tuple[str, ...] = ()) -> Callable:
    """Give ``fixed`` (which takes ``**options``) a signature with one option per schema field, between its
    arguments and its own options (so `--help` lists them in that order); ``skip``: fields it takes itself."""
    from typer.models import ArgumentInfo

    own = [p for p in inspect.signature(fixed).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    args = [p for p in own if isinstance(p.default, ArgumentInfo)]
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p not in args]
    params = args + parameters(schema, skip) + rest  # the command's arguments, the schema's options, its own options
    fixed.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fixed.__annotations__ = {p.name: p.annotation for p in params}
    return fixed


def collect(schema: type[BaseModel], options: dict[str, Any]) -> dict[str, Any]:
    """The schema's keywords from parsed option values (JSON fields decoded, naming the flag on an error)."""
    values = {}
    for name, field in schema.model_fields.items():
        if name not in options:
            continue
        v = options[name]
        if _extra(field).get("json"):
            v = json_arg(v, f"--{name}")
        values[name] = v
    return values
