"""Shared CLI helpers: the client, JSON output, confirmation."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console

from mixtrain.display import fmt_duration as fmt_duration  # re-exported for the commands
from mixtrain.display import fmt_time as fmt_time

console = Console()
err_console = Console(stderr=True)


def client():
    from mixtrain.client import MixClient

    return MixClient()


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        from mixtrain.errors import InvalidInput

        raise InvalidInput(f"refusing to {question} without confirmation", "pass -y/--yes")
    if not typer.confirm(f"{question}?"):
        raise typer.Exit(1)


STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "running": "cyan",
    "pending": "yellow",
    "cancelled": "magenta",
    "timeout": "red",
}


def json_arg(value: str | None, flag: str):
    """A JSON option's value, or a one-line error naming the flag."""
    if value is None:
        return None
    from mixtrain.errors import InvalidInput

    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{flag}: invalid JSON ({exc.msg} at column {exc.colno})", "quote the JSON in single quotes"
        ) from None
