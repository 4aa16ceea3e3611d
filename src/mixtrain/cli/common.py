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
    from mixtrain.records import json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=json_default) + "\n")


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        from mixtrain.errors import InvalidInput

        raise InvalidInput(f"refusing to {question} without confirmation", "pass -y/--yes")
    if not typer.confirm(f"{question}?"):
        raise typer.Exit(1)


TONE_STYLE = {"ok": "green", "bad": "red", "live": "cyan", "wait": "yellow", "muted": "magenta"}


def status_markup(status) -> str:
    """A status in its colour (``RunStatus.tone`` says which; this maps tones to terminal colours)."""
    from mixtrain.records import status_tone

    return f"[{TONE_STYLE.get(status_tone(status), '')}]{status}[/]"


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
