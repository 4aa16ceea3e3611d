"""`mixtrain secret ...` — values are never printed unless asked with --show."""

from __future__ import annotations

import typer

from mixtrain.cli.common import client, confirm, console, fmt_time, print_json

app = typer.Typer(no_args_is_help=True, add_completion=False)  # its one-line help: NOUNS in cli/main.py


def _read_value(name: str, value: str | None) -> str:
    if value is not None:
        return value
    import sys

    if sys.stdin.isatty():
        return typer.prompt(f"Value for {name}", hide_input=True)
    return sys.stdin.read().rstrip("\n")


@app.command("create")
def create(
    name: str, value: str | None = typer.Argument(None, help="Value (omit to type it hidden or pipe it on stdin).")
):
    """Create a secret (fails if it exists)."""
    client().create_secret(name, _read_value(name, value))
    console.print(f"Created secret {name}")


@app.command("set")
def set_(
    name: str,
    value: str | None = typer.Argument(None, help="Value (omit to type it hidden or pipe it on stdin)."),
    update: bool = typer.Option(False, "--update", help="Replace an existing value."),
):
    """Set a secret; --update replaces an existing one."""
    replaced = client().set_secret(name, _read_value(name, value), update_existing=update)
    console.print(f"{'Updated' if replaced else 'Created'} secret {name}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")):
    """List secret names (never values)."""
    rows = client().list_secrets()
    if as_json:
        print_json([{"name": r["name"], "updated_at": r["updated_at"]} for r in rows])
        return
    from rich.table import Table

    t = Table("name", "created", "updated")
    for r in rows:
        t.add_row(r["name"], fmt_time(r["created_at"]), fmt_time(r["updated_at"]))
    console.print(t if rows else "No secrets.")


@app.command("get")
def get(name: str, show: bool = typer.Option(False, "--show", help="Print the value.")):
    """Confirm a secret exists; --show prints its value."""
    value = client().get_secret(name)
    if show:
        print(value)
    else:
        console.print(f"{name} = ******** ({len(value)} characters; --show to print)")


@app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "-y", "--yes")):
    """Delete a secret."""
    c = client()
    c.require_secret(name)  # no decryption: a secret whose key was lost can still be deleted
    confirm(f"delete secret {name!r}", yes)
    c.delete_secret(name)
    console.print(f"Deleted secret {name}")
