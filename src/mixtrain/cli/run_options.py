"""``workflow run NAME --x value ...``: a click command built from the workflow's stored input spec.

Each input becomes an option under both spellings (``--num_epochs`` / ``--num-epochs``); a bool takes
``--x`` (true), ``--x true|false|yes|no|1|0`` or ``--no-x``. ``-i/--input-json/-c/--config`` give JSON
(or a JSON file) and flags override it; ``-d/--detach`` returns at once. click does the tokenising;
values stay text here and are typed and checked by ``runner.validate_inputs`` — the same code the
Python API goes through — so a CLI value and an SDK value meet the same rules.

Input errors are reported like every other bad input (``Error: ...``, exit 1), naming the input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import click

from mixtrain.errors import InvalidInput

JSON_FLAGS = ("-i", "--input-json", "--input_json", "-c", "--config")
RESERVED = {"i", "input_json", "c", "config", "d", "detach", "h", "help", "num_nodes"}


@dataclass
class RunArgs:
    inputs: dict = field(default_factory=dict)
    detach: bool = False
    help: bool = False
    num_nodes: int = 1  # a platform option, not a workflow input: how many Ray nodes the run's training gangs


def _record(ctx: click.Context, param: click.Parameter, value):
    """click processes parameters in command-line order: keep that order, so the last flag wins."""
    if value is not None and value != () and param.name:
        ctx.meta.setdefault("mixtrain.given", []).append((param.name, value))
    return value


def _spellings(name: str, prefix: str = "") -> list[str]:
    return list(
        dict.fromkeys(
            [f"--{prefix}{name}", f"--{prefix}{name}".replace("_", "-"), f"--{prefix.replace('-', '_')}{name}"]
        )
    )


def build_command(spec: dict) -> click.Command:
    params: list[click.Parameter] = [
        click.Option([*JSON_FLAGS, "json_inputs"], multiple=True, callback=_record, expose_value=False),
        click.Option(["-d", "--detach", "detach"], is_flag=True, default=False),
        click.Option(["-h", "--help", "help"], is_flag=True, default=False),
        click.Option(["--num_nodes", "--num-nodes", "num_nodes"], type=click.IntRange(min=1), default=1),
    ]
    for inp in spec["inputs"]:
        name = inp["name"]
        if name in RESERVED:
            continue  # reachable through -i JSON only
        if inp["type"] == "bool":
            params.append(
                click.Option(
                    [*_spellings(name), f"in__{name}"],
                    is_flag=False,
                    flag_value="true",
                    default=None,
                    callback=_record,
                    expose_value=False,
                )
            )
            params.append(
                click.Option(
                    [*_spellings(name, "no-"), f"no__{name}"],
                    is_flag=True,
                    flag_value="false",
                    default=None,
                    callback=_record,
                    expose_value=False,
                )
            )
        else:
            params.append(
                click.Option([*_spellings(name), f"in__{name}"], default=None, callback=_record, expose_value=False)
            )
    return click.Command(
        "run",
        params=params,
        context_settings={"ignore_unknown_options": False, "allow_extra_args": True, "help_option_names": []},
    )


def parse(args: list[str], spec: dict) -> RunArgs:
    names = [i["name"] for i in spec["inputs"]]
    try:
        ctx = build_command(spec).make_context("run", list(args))
    except click.NoSuchOption as exc:
        raise InvalidInput(
            f"unknown input {_norm(exc.option_name)}", f"available: {', '.join('--' + n for n in names) or '(none)'}"
        ) from None
    except click.BadOptionUsage as exc:
        if "does not take a value" in exc.message:
            raise InvalidInput(f"{exc.option_name} takes no value", f"use {exc.option_name} alone") from None
        if "requires an argument" in exc.message:
            raise InvalidInput(f"{exc.option_name} needs a value", f"pass {exc.option_name} VALUE") from None
        raise InvalidInput(exc.message, "see `mixtrain workflow run NAME --help`") from None
    except click.UsageError as exc:
        raise InvalidInput(exc.message, "see `mixtrain workflow run NAME --help`") from None
    if ctx.args:
        raise InvalidInput(f"unexpected argument {ctx.args[0]!r}", "inputs are given as --name value")
    out = RunArgs(detach=ctx.params["detach"], help=ctx.params["help"], num_nodes=ctx.params["num_nodes"])
    json_inputs: dict = {}
    flags: dict = {}
    for pname, value in ctx.meta.get("mixtrain.given", []):
        if pname == "json_inputs":
            for v in value:
                json_inputs.update(_load_json(v, "-i"))
        else:
            kind, _, name = pname.partition("__")
            flags[name] = "false" if kind == "no" else value
    json_inputs = {_norm(k).lstrip("-"): v for k, v in json_inputs.items()}
    out.inputs = {**json_inputs, **flags}
    return out


def _norm(flag: str) -> str:
    return "--" + flag.lstrip("-").replace("-", "_")


def _load_json(value: str, flag: str) -> dict:
    value = value[1:] if value.startswith("=") else value  # `-i={...}`: click keeps the '=' of a short option
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InvalidInput(
                f"{flag}: {value!r} is neither a JSON object nor a file", "pass '{\"name\": value}' or a .json file"
            )
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{flag}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", "fix the JSON"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{flag}: expected a JSON object, got {type(data).__name__}", "pass '{\"name\": value}'")
    return data
