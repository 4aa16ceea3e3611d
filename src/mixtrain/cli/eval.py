"""`mixtrain eval ...` — score models on a dataset side by side; results are a dataset, scores a record."""

from __future__ import annotations

import sys

import typer

from mixtrain.cli import spec_options
from mixtrain.cli.common import (
    client,
    confirm,
    console,
    err_console,
    fmt_duration,
    fmt_time,
    print_json,
    status_markup,
)

app = typer.Typer(no_args_is_help=True, add_completion=False)  # its one-line help: NOUNS in cli/main.py


def create(
    name: str = typer.Argument(..., help="Eval name (its results become dataset NAME-results)."),
    detach: bool = typer.Option(False, "-d", "--detach", help="Start it and return at once."),
    **options,
):
    """Score models on a dataset: one model load each, batched greedy generation, results + scores stored."""
    from mixtrain.evals.engine import WORKFLOW
    from mixtrain.evals.spec import EvalSpec

    c = client()
    rec = c.create_eval(name, spec=EvalSpec.of(**spec_options.collect(EvalSpec, options)), detach=True, fork=True)
    number = rec.run["number"] if rec.run else "?"
    err_console.print(f"[dim]Started eval {name} (run #{number} of {WORKFLOW}) — logs: mixtrain eval logs {name} -f[/]")
    if detach:
        console.print(f"Eval {name} started (detached). See it: mixtrain eval get {name}")
        return
    _follow_and_show(c, name)


def _follow_and_show(c, name: str) -> None:
    from mixtrain.errors import WorkflowFailed

    try:
        rec = c.follow_eval(name, sys.stdout.buffer)
    except KeyboardInterrupt:
        err_console.print(
            f"\nDetached: eval {name} goes on. Follow it: mixtrain eval logs {name} -f — stop it: mixtrain eval cancel {name}"
        )
        raise typer.Exit(130) from None
    if rec.status != "completed":
        raise WorkflowFailed(
            f"eval {name} {rec.status}: {rec.error or 'no reason recorded'}", f"see `mixtrain eval logs {name}`"
        )
    console.print()
    _show(rec)


def _create_command():
    from mixtrain.evals.spec import EvalSpec

    app.command("create")(spec_options.command_with(EvalSpec, create))


_create_command()


@app.command("resume")
def resume(name: str, detach: bool = typer.Option(False, "-d", "--detach", help="Start it and return at once.")):
    """Continue a failed or cancelled eval: models it finished are kept, the others are evaluated."""
    from mixtrain.evals.engine import WORKFLOW

    c = client()
    rec = c.resume_eval(name, detach=True, fork=True)
    kept = list(rec.scores)
    number = rec.run["number"] if rec.run else "?"
    err_console.print(
        f"[dim]Resumed eval {name} (run #{number} of {WORKFLOW}); keeping {len(kept)} finished model(s)"
        f"{': ' + ', '.join(kept) if kept else ''} — logs: mixtrain eval logs {name} -f[/]"
    )
    if detach:
        console.print(f"Eval {name} resumed (detached). See it: mixtrain eval get {name}")
        return
    _follow_and_show(c, name)


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json"),
    user: str | None = typer.Option(None, "--user", help="Only the evals this user (MIXTRAIN_USER) created."),
):
    """List evals: dataset, metric, models and their scores."""
    rows = client().list_evals(user=user)
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    from mixtrain.records import shown_user

    t = Table("name", "status", "dataset", "metric", "models (score)", "user", "created")
    for r in rows:
        models = ", ".join(f"{m['label']} ({_pct(r['scores'].get(m['label'], {}).get('mean'))})" for m in r["models"])
        t.add_row(
            r["name"],
            status_markup(r["status"]),
            r["dataset"],
            r["metric"],
            models,
            shown_user(r["created_by"]),
            fmt_time(r["created_at"]),
        )
    if rows:
        console.print(t)
    else:
        console.print(
            f"No evals created by {user}."
            if user
            else "No evals yet — `mixtrain eval create NAME --dataset D --models A,B`."
        )


@app.command("get")
def get(name: str, as_json: bool = typer.Option(False, "--json")):
    """Show an eval: models side by side with their scores, and the first two compared."""
    rec = client().get_eval_info(name)
    if as_json:
        print_json(rec)
        return
    _show(rec)


@app.command("results")
def results(
    name: str,
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many rows to show."),
    disagreements: bool = typer.Option(
        False, "--disagreements", help="Only rows where the models' scores differ (outputs, with --metric none)."
    ),
    as_json: bool = typer.Option(False, "--json"),
):
    """Show result rows: prompt, reference, and each model's output and score."""
    c = client()
    info = c.get_eval_info(name)
    rows = c.eval_results(name, disagreements=disagreements)
    labels = info.labels
    rows = rows[:limit]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table(
        "row",
        "prompt",
        "reference",
        *labels,
        title=f"{name}: {len(rows)} row(s){' where the models disagree' if disagreements else ''}",
        title_justify="left",
    )
    for r in rows:
        cells = []
        for lab in labels:
            out, sc = r[lab + "__output"], r[lab + "__score"]
            cells.append(
                "[red](failed)[/]" if out is None else f"{out}" + ("" if sc is None else f"  [dim]({sc:.2f})[/]")
            )
        t.add_row(str(r["row_id"]), r["prompt"], r["reference"] or "", *cells)
    console.print(t)


@app.command("logs")
def logs(name: str, follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until the eval ends.")):
    """Print an eval's run log (progress, per-model scores, failed rows)."""
    c = client()
    rec = c.get_eval_info(name)
    if rec.run is None:
        err_console.print(f"eval {name} has no run ({rec.status})")
        return
    if follow:
        c.follow_eval(name)
        return
    path = c.eval_log_path(name)
    if path is not None and path.exists():
        sys.stdout.buffer.write(path.read_bytes())
    else:
        err_console.print(f"eval {name} has no log yet ({rec.status})")


@app.command("cancel")
def cancel(name: str):
    """Cancel a pending or running eval (its whole process tree)."""
    rec = client().cancel_eval(name)
    console.print(f"Eval {name}: {rec['status']}")


@app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "-y", "--yes")):
    """Delete an eval record and its results dataset (refused while it runs)."""
    c = client()
    rec = c.get_eval_info(name)
    results = f" and its results dataset {rec['results_dataset']!r}" if rec["results_dataset"] else ""
    confirm(f"delete eval {name!r}{results}", yes)
    c.delete_eval(name)
    console.print(f"Deleted eval {name}")


def _show(rec: dict) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{rec['name']}[/]  {status_markup(rec['status'])}  dataset {rec['dataset']} @ snapshot {rec['snapshot_id']}  metric {rec['metric']}"
    )
    run = rec["run"]
    took = (rec["finished_at"] - rec["created_at"]).total_seconds() if rec["finished_at"] else None
    run_text = f"{run['workflow']} #{run['number']}" if run else "-"
    console.print(
        f"created {fmt_time(rec['created_at'])}  took {fmt_duration(took)}  run {run_text}  "
        + (f"results: dataset {rec['results_dataset']}" if rec["results_dataset"] else "results: none written")
    )
    gen = rec["config"].get("generation") or {}
    console.print(
        "generation: "
        + " ".join(f"{k}={v}" for k, v in gen.items())
        + f"  batch_size={rec['config'].get('batch_size')}  limit={rec['config'].get('limit') or 'all'}"
    )
    if rec["error"]:
        console.print(f"[red]error:[/] {rec['error']}")
    t = Table("model", rec["metric"], "95% CI", "n", "failed", "gen s")
    for m in rec["models"]:
        s = rec["scores"].get(m["label"])
        if s is None:
            t.add_row(m["label"], "-", "-", "-", "-", "-")
            continue
        ci = "-" if s["ci_low"] is None else f"{s['ci_low'] * 100:.1f}–{s['ci_high'] * 100:.1f}%"
        t.add_row(m["label"], _pct(s["mean"]), ci, str(s["n"]), str(s["failed"]), f"{s['generation_s']:.1f}")
    console.print(t)
    cmp = rec.get("comparison")
    if cmp and cmp.get("diff") is not None:
        console.print(
            f"{cmp['a']} − {cmp['b']}: {cmp['diff'] * 100:+.1f} points (95% CI {cmp['ci_low'] * 100:+.1f} … {cmp['ci_high'] * 100:+.1f}), "
            f"paired bootstrap p = {cmp['p_value']:.4f} over {cmp['n']} rows"
        )
    failures = next((s.get("failures") for s in rec["scores"].values() if s.get("failures")), None)
    if failures:
        console.print(f"[yellow]{len(failures)} row(s) failed:[/]")
        for f in failures[:10]:
            console.print(f"  row {f['row_id']}: {f['reason']}")


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"
