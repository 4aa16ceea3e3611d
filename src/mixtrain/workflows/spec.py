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


BOUNDS = ("ge", "gt", "le", "lt")


def extract(cls: type[MixFlow]) -> dict:
    """Build the spec from ``mixparam`` class attributes and the ``run()`` signature.

    A ``run(self, params: SomeModel)`` whose one parameter is a pydantic model takes its inputs from
    the model's fields (type, default, description, choices, bounds): the model is then the one
    source of truth, and ``schema`` names it so the CLI can run the same validation before a run exists.
    """
    inputs: dict[str, dict] = {}
    hints = _hints(cls)
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, MixParam):
                inputs[name] = _from_mixparam(name, value, hints.get(name, inspect.Parameter.empty), "attribute")
    schema = None
    model = input_model(cls)
    if model is not None:
        inputs.update({i["name"]: i for i in _from_model(model)})
        schema = model_path(model)
    else:
        sig = inspect.signature(cls.run)
        run_hints = _hints(cls.run)
        for name, param in list(sig.parameters.items())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = run_hints.get(name, param.annotation)
            if isinstance(param.default, MixParam):
                inputs[name] = _from_mixparam(name, param.default, annotation, "run")
                continue
            required = param.default is param.empty
            if param.annotation is param.empty and not required and param.default is not None:
                annotation = type(param.default)
            typ, choices = describe_type(annotation)
            inputs[name] = _input(name, typ, required, None if required else param.default, "", choices, {}, "run")
    resources = {k: getattr(cls, f"_mixflow_{k}", None) for k in RESOURCE_KEYS}
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    return {
        "entrypoint": cls.__name__,
        "doc": doc,
        "inputs": list(inputs.values()),
        "resources": resources,
        "schema": schema,
    }


def _input(
    name: str, typ: str, required: bool, default: Any, description: str, choices, bounds: dict, style: str
) -> dict:
    return {
        "name": name,
        "type": typ,
        "required": required,
        "default": None if required else to_jsonable(default),
        "description": description,
        "choices": choices,
        **{b: bounds.get(b) for b in BOUNDS},
        "style": style,
    }


def _from_mixparam(name: str, p: MixParam, annotation, style: str) -> dict:
    typ, choices = describe_type(annotation)
    return _input(
        name,
        typ,
        p.required,
        p.default,
        p.description,
        p.choices if p.choices is not None else choices,
        p.bounds,
        style,
    )


def input_model(cls) -> type | None:
    """The pydantic model of ``run(self, params: Model)``, if that is how the workflow declares its inputs."""
    params = list(inspect.signature(cls.run).parameters.values())[1:]
    if len(params) != 1:
        return None
    annotation = _hints(cls.run).get(params[0].name, params[0].annotation)
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _from_model(model) -> list[dict]:
    out = []
    for name, field in model.model_fields.items():
        typ, choices = describe_type(field.annotation)
        bounds = {b: getattr(m, b) for m in field.metadata for b in BOUNDS if getattr(m, b, None) is not None}
        required = field.is_required()
        out.append(
            _input(
                name,
                typ,
                required,
                None if required else field.get_default(call_default_factory=True),
                field.description or "",
                choices,
                bounds,
                "model",
            )
        )
    return out


def model_path(model) -> str | None:
    """``module:Class`` when the model lives in an installed module (never in the user's workflow file)."""
    module = getattr(model, "__module__", "")
    if not module or module.startswith("mixtrain_user_") or module == "__main__" or "<" in model.__qualname__:
        return None
    return f"{module}:{model.__qualname__}"


def load_model(path: str):
    """Import a ``module:Class`` schema recorded by ``extract`` (platform code, importable in the CLI)."""
    import importlib

    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def validate_model(model, data: dict):
    """Validate ``data`` with a pydantic model; every problem in one InvalidInput, each naming its flag."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            # A check across parameters (a model validator) names its flags itself.
            problems.append(f"--{where}: {msg}" if where else msg)
        raise InvalidInput("; ".join(problems), "fix the parameters listed") from None


def to_jsonable(value: Any) -> Any:
    """One conversion to JSON-safe values, for input defaults and run outputs alike."""
    import dataclasses
    from pathlib import PurePath

    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


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
    out: Any
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
    check_bounds(spec_input, out)
    choices = spec_input.get("choices")
    if choices is not None and out not in choices:
        raise InvalidInput(
            f"{flag}: {out!r} is not one of {', '.join(map(str, choices))}",
            f"pick one of: {', '.join(map(str, choices))}",
        )
    return out


_BOUND_TEXT = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def bounds_text(spec_input: dict) -> str:
    """``≥ 1``, ``> 0, < 1``: the bounds as ``--help`` and errors show them."""
    return ", ".join(f"{_BOUND_TEXT[b]} {spec_input[b]}" for b in BOUNDS if spec_input.get(b) is not None)


def check_bounds(spec_input: dict, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    ok = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}
    if any(spec_input.get(b) is not None and not ok[b](value, spec_input[b]) for b in BOUNDS):
        raise InvalidInput(
            f"--{spec_input['name']}: {value!r} is out of range", f"use a value {bounds_text(spec_input)}"
        )


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ValueError


def _article(typ: str) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "list": "a JSON list",
        "dict": "a JSON object",
    }.get(typ, "a string")


def _example(typ: str) -> str:
    return {
        "int": "e.g. 3",
        "float": "e.g. 0.0002",
        "bool": "true/false/yes/no/1/0",
        "list": 'e.g. \'["a","b"]\'',
        "dict": "e.g. '{\"k\": 1}'",
    }.get(typ, "a value")
