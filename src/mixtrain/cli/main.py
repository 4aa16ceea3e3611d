"""Entry point: registers one sub-app per noun and maps expected errors to `Error: ...` + exit 1."""

from __future__ import annotations

import os
import sys

import typer

from mixtrain import __version__
from mixtrain.cli import dataset, doctor, eval, model, secret, ui, workflow
from mixtrain.cli.common import console, print_json

app = typer.Typer(
    name="mixtrain",
    help="mixtrain — self-hosted datasets, workflows and VLM fine-tuning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(dataset.app, name="dataset")
app.add_typer(workflow.app, name="workflow")
app.add_typer(model.app, name="model")
app.add_typer(secret.app, name="secret")
app.add_typer(eval.app, name="eval")
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
        "workspace": (str(s.workspace), "home"),
    }
    if as_json:
        print_json({k: v for k, (v, _) in rows.items()})
        return
    for key, (value, source) in rows.items():
        console.print(f"{key:13} {value}  [dim]({source})[/]")


def _mask(url: str) -> str:
    """Hide a password in a database URL."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def main() -> None:
    from mixtrain.errors import MixtrainError

    try:
        rc = app(standalone_mode=False)
    except MixtrainError as exc:
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
