"""Parse ``workflow run NAME --x value ...`` against a stored input spec (no user code involved).

Forms: ``--x value``, ``--x=value``, ``-``/``_`` interchangeable, a bool may stand bare (true) or
take true/false/yes/no/1/0, ``--no-x`` is false. ``-i/--input-json/-c/--config`` give JSON (or a JSON
file); flags override it. ``-d/--detach`` returns at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.workflows.spec import FALSE, TRUE

JSON_FLAGS = ("-i", "--input-json", "--input_json", "-c", "--config")
DETACH_FLAGS = ("-d", "--detach")


@dataclass
class RunArgs:
    inputs: dict = field(default_factory=dict)
    detach: bool = False
    help: bool = False


def _norm(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def parse(args: list[str], spec: dict) -> RunArgs:
    by_name = {i["name"]: i for i in spec["inputs"]}
    out, json_inputs, flags = RunArgs(), {}, {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            out.help = True
            i += 1
            continue
        if arg in DETACH_FLAGS:
            out.detach = True
            i += 1
            continue
        key, eq, inline = arg.partition("=")
        if key in JSON_FLAGS:
            if not eq:
                if i + 1 >= len(args):
                    raise InvalidInput(f"{key} needs a value", "pass a JSON object or a JSON file path")
                inline, i = args[i + 1], i + 1
            json_inputs.update(_load_json(inline, key))
            i += 1
            continue
        if not arg.startswith("--") or len(arg) <= 2:
            raise InvalidInput(f"unexpected argument {arg!r}", "inputs are given as --name value")
        name = _norm(key)
        negated = False
        if name not in by_name and name.startswith("no_") and name[3:] in by_name and by_name[name[3:]]["type"] == "bool":
            name, negated = name[3:], True
        inp = by_name.get(name)
        if inp is None:
            flags[name] = inline if eq else (args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "")
            i += 1 if eq or i + 1 >= len(args) or args[i + 1].startswith("--") else 2
            continue
        if inp["type"] == "bool":
            if negated:
                if eq:
                    raise InvalidInput(f"--no-{name.replace('_', '-')} takes no value", f"use --{name} {inline}")
                flags[name] = False
            elif eq:
                flags[name] = inline
            elif i + 1 < len(args) and args[i + 1].strip().lower() in TRUE | FALSE:
                flags[name] = args[i + 1]
                i += 1
            else:
                flags[name] = True
            i += 1
            continue
        if eq:
            flags[name] = inline
        elif i + 1 < len(args):
            flags[name] = args[i + 1]
            i += 1
        else:
            raise InvalidInput(f"--{name} needs a value", f"pass --{name} VALUE")
        i += 1
    for k in list(json_inputs):
        if _norm(k) != k:
            json_inputs[_norm(k)] = json_inputs.pop(k)
    out.inputs = {**json_inputs, **flags}
    return out


def _load_json(value: str, flag: str) -> dict:
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InvalidInput(f"{flag}: {value!r} is neither a JSON object nor a file", "pass '{\"name\": value}' or a .json file")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{flag}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", "fix the JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{flag}: expected a JSON object, got {type(data).__name__}", "pass '{\"name\": value}'")
    return data
