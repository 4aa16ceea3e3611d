"""The input spec of a MixFlow class, and coercion of user values against it.

The spec is plain JSON (stored with each workflow version) so the CLI can type and check inputs
without importing the user's code.
"""

from __future__ import annotations

import enum
import inspect
import json
import typing
from typing import Any

from mixtrain.errors import InvalidInput
from mixtrain.workflows.flow import MixFlow, MixParam

RESOURCE_KEYS = ("gpu", "memory", "timeout", "cpu")
TRUE = {"true", "yes", "1", "y", "on"}
FALSE = {"false", "no", "0", "n", "off"}


def describe_type(annotation: Any) -> tuple[str, list | None]:
    """Map an annotation to (spec type, choices)."""
    if annotation is inspect.Parameter.empty or annotation is None or annotation is Any:
        return "str", None
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = list(typing.get_args(annotation))
        return _scalar_name(type(choices[0])) if choices else "str", choices
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return describe_type(args[0]) if len(args) == 1 else ("str", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [m.value for m in annotation]
        return (_scalar_name(type(values[0])) if values else "str"), values
    if origin in (list, tuple, set) or annotation in (list, tuple, set):
        return "list", None
    if origin is dict or annotation is dict:
        return "dict", None
    if isinstance(annotation, type):
        return _scalar_name(annotation), None
    return "str", None


def _scalar_name(t: type) -> str:
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "float"
    return "str"


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def extract(cls: type[MixFlow]) -> dict:
    """Build the spec from ``mixparam`` class attributes and the ``run()`` signature."""
    inputs: dict[str, dict] = {}
    hints = _hints(cls)
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, MixParam):
                typ, choices = describe_type(hints.get(name, inspect.Parameter.empty))
                inputs[name] = {
                    "name": name,
                    "type": typ,
                    "required": value.required,
                    "default": None if value.required else _jsonable(value.default),
                    "description": value.description,
                    "choices": value.choices if value.choices is not None else choices,
                    "style": "attribute",
                }
    sig = inspect.signature(cls.run)
    run_hints = _hints(cls.run)
    for name, param in list(sig.parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = param.default
        if isinstance(default, MixParam):
            required, desc, dflt, extra_choices = default.required, default.description, default.default, default.choices
        else:
            required, desc, dflt, extra_choices = default is param.empty, "", default, None
        typ, choices = describe_type(run_hints.get(name, param.annotation))
        if param.annotation is param.empty and not required and dflt is not None and not isinstance(dflt, MixParam):
            typ, choices = describe_type(type(dflt))
        inputs[name] = {
            "name": name,
            "type": typ,
            "required": required,
            "default": None if required else _jsonable(dflt),
            "description": desc,
            "choices": extra_choices if extra_choices is not None else choices,
            "style": "run",
        }
    resources = {k: getattr(cls, f"_mixflow_{k}", None) for k in RESOURCE_KEYS}
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    return {"entrypoint": cls.__name__, "doc": doc, "inputs": list(inputs.values()), "resources": resources}


def _hints(obj) -> dict:
    try:
        return typing.get_type_hints(obj)
    except Exception:
        return getattr(obj, "__annotations__", {}) or {}


# -- coercion ------------------------------------------------------------------------------------
def coerce(spec_input: dict, value: Any, *, from_text: bool) -> Any:
    """Convert one value to the input's type; raise InvalidInput quoting the offending value."""
    name, typ = spec_input["name"], spec_input["type"]
    flag = "--" + name
    try:
        if typ == "bool":
            out = _to_bool(value)
        elif typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value) if not isinstance(value, str) else int(value.strip())
        elif typ == "float":
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        elif typ in ("list", "dict"):
            out = json.loads(value) if isinstance(value, str) and from_text else value
            if typ == "list" and isinstance(out, str):
                out = [v.strip() for v in out.split(",") if v.strip()]
            if not isinstance(out, list if typ == "list" else dict):
                raise ValueError
        else:
            if isinstance(value, (dict, list)):
                raise ValueError
            out = value if isinstance(value, str) else str(value)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidInput(f"{flag}: expected {_article(typ)}, got {value!r}", f"pass {_example(typ)}") from None
    choices = spec_input.get("choices")
    if choices is not None and out not in choices:
        raise InvalidInput(
            f"{flag}: {out!r} is not one of {', '.join(map(str, choices))}", f"pick one of: {', '.join(map(str, choices))}"
        )
    return out


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ValueError


def _article(typ: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "list": "a JSON list", "dict": "a JSON object"}.get(typ, "a string")


def _example(typ: str) -> str:
    return {"int": "e.g. 3", "float": "e.g. 0.0002", "bool": "true/false/yes/no/1/0", "list": 'e.g. \'["a","b"]\'', "dict": 'e.g. \'{"k": 1}\''}.get(typ, "a value")
