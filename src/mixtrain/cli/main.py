"""Entry point: one sub-app per noun, loaded on use, and expected errors mapped to `Error: ...` + exit 1.

Why lazy: every command starts here, and ``mixtrain --help`` or ``mixtrain secret list`` should not pay
for importing the modules of the other nouns. The root help lists each noun from the table below
(name → module, one-line help) without importing it; the module is imported only when its noun is run.
"""

from __future__ import annotations

import importlib
import os
import sys
from difflib import get_close_matches

import click
import typer
from typer.core import TyperGroup

from mixtrain import __version__
from mixtrain.cli import doctor, ui
from mixtrain.cli.common import console, print_json

# noun -> (module whose ``app`` holds its commands, one-line help); the single place this help is written.
NOUNS = {
    "dataset": ("mixtrain.cli.dataset", "Upload and inspect datasets (Apache Iceberg tables)."),
    "workflow": ("mixtrain.cli.workflow", "Register workflow files and run them."),
    "model": ("mixtrain.cli.model", "Registered models: inspect, query with an image and a prompt, export, serve."),
    "secret": ("mixtrain.cli.secret", "Encrypted secrets, injected into workflow runs as environment variables."),
    "eval": ("mixtrain.cli.eval", "Evaluate models on a dataset, side by side, as tracked runs."),
}


class LazyNouns(TyperGroup):
    """The root group: nouns are listed from ``NOUNS`` and imported only when resolved for running."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*NOUNS, *(n for n in super().list_commands(ctx) if n not in NOUNS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in NOUNS and cmd_name not in self.commands:
            # Listing (help): a summary that imports nothing; resolve_command loads the real group.
            return click.Command(cmd_name, help=NOUNS[cmd_name][1])
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else None
        if name in NOUNS and name not in self.commands:
            module, help_text = NOUNS[name]
            group = typer.main.get_command(importlib.import_module(module).app)
            group.name, group.help = name, help_text
            self.add_command(group, name)
        try:
            return click.Group.resolve_command(self, ctx, args)
        except click.UsageError as err:  # suggest among every command, loaded or not
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if not matches:
                raise
            hint = ", ".join(repr(m) for m in matches)
            raise click.UsageError(f"{err.message.rstrip('.')}. Did you mean {hint}?", ctx) from None


app = typer.Typer(
    cls=LazyNouns,
    name="mixtrain",
    help="mixtrain — self-hosted datasets, workflows and VLM fine-tuning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("doctor")(doctor.doctor)
app.command("ui")(ui.ui)


def _version(value: bool):
    if value:
        print(f"mixtrain {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")):
    pass


@app.command("config")
def config(as_json: bool = typer.Option(False, "--json")):
    """Show the resolved settings and where each came from (env > config file > default)."""
    from mixtrain.settings import load_settings

    s = load_settings()
    rows = {
        "home": (str(s.home), s.sources["home"]),
        "database_url": (_mask(s.database_url), s.sources["database_url"]),
        "catalog_url": (_mask(s.catalog_url), s.sources["catalog_url"]),
        "warehouse": (s.warehouse, s.sources["warehouse"]),
        "s3_endpoint": (s.s3_endpoint, s.sources["s3_endpoint"]),
        "s3_region": (s.s3_region, s.sources["s3_region"]),
        "s3_keys": _keys_state(),
        "workspace": (str(s.workspace), "home"),
        "user": (s.user, s.sources["user"]),
        "ray_address": (s.ray_address, s.sources["ray_address"]),
    }
    if as_json:
        print_json({k: v for k, (v, _) in rows.items()})
        return
    for key, (value, source) in rows.items():
        value = value or "(none: workflows run on this machine)"  # an unset team setting says what that means
        console.print(f"{key:13} {value}  [dim]({source})[/]")


def _keys_state() -> tuple[str, str]:
    """Whether S3 keys are in the environment — never their values."""
    from mixtrain.objectstore import KEY_VARS

    have = [v for v in KEY_VARS if os.environ.get(v)]
    return ("set" if len(have) == len(KEY_VARS) else "not set", " + ".join(KEY_VARS) + " in env")


def _mask(url: str) -> str:
    """Hide a password in a database URL."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def main() -> None:
    from mixtrain.errors import MixtrainError

    try:
        rc = app(standalone_mode=False)
    except MixtrainError as exc:
        detail = getattr(exc, "detail", "")  # e.g. the traceback of a workflow file that failed to import
        if detail:
            sys.stderr.write(detail + "\n")
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted")
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    code = rc if isinstance(rc, int) else 0
    if "torch" in sys.modules:
        # `model run`/`export` loaded torch: its interpreter teardown costs ~2 s after the answer is out.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
