"""`mixtrain doctor [--fix]`: check the home (both SQLite files, catalog ↔ warehouse, key, orphans, stuck runs)."""

from __future__ import annotations

import typer

from mixtrain.cli.common import console


def doctor(
    fix: bool = typer.Option(
        False, "--fix", help="Repair what is safe: remove orphan/temp files, fail runs stuck as running."
    ),
    older_than: int = typer.Option(
        3600,
        "--older-than",
        min=0,
        help="Only treat unreferenced files older than this many seconds as orphans (protects writes in flight).",
    ),
):
    """Check this mixtrain home for damage and say how to fix it (exit 1 while problems remain)."""
    from mixtrain.doctor import check
    from mixtrain.settings import load_settings

    report = check(load_settings(), fix=fix, older_than=older_than)
    for f in report.findings:
        if f.ok:
            console.print(f"[green]✔[/] {f.what}", highlight=False)
        elif f.fixed:
            console.print(f"[yellow]✔ fixed:[/] {f.what}", highlight=False)
        else:
            console.print(f"[red]✖[/] {f.what}" + (f" — {f.fix}" if f.fix else ""), highlight=False)
    if not report.healthy:
        raise typer.Exit(1)
