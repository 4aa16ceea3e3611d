"""`mixtrain eval ...` — score models on a dataset side by side; results are a dataset, scores a record."""

from __future__ import annotations

import sys

import typer

from mixtrain.cli.common import (
    STATUS_STYLE,
    client,
    confirm,
    console,
    err_console,
    fmt_duration,
    fmt_time,
    json_arg,
    print_json,
)

app = typer.Typer(no_args_is_help=True, add_completion=False)  # its one-line help: NOUNS in cli/main.py


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Eval name (its results become dataset NAME-results)."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset to evaluate on (its current snapshot is pinned)."),
    models: str = typer.Option(
        ..., "--models", help="MODEL[:VERSION][,MODEL...] — compared side by side; the first two get a paired test."
    ),
    metric: str = typer.Option(
        "exact_match",
        "--metric",
        help="exact_match | contains | anls | vqa | none (outputs only). A list reference (several answers) scores the best match; vqa: min(#matching answers / 3, 1).",
    ),
    image_column: str = typer.Option(
        "image_path", "--image_column", "--image-column", help="Column with image paths or URLs."
    ),
    prompt_column: str = typer.Option("prompt", "--prompt_column", "--prompt-column", help="Column with the prompt."),
    reference_column: str | None = typer.Option(
        None, "--reference_column", "--reference-column", help="Column with the expected answer (default: response)."
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help='Generation settings JSON, e.g. {"max_new_tokens": 32, "temperature": 0}. Greedy by default.',
    ),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate only the first N rows."),
    batch_size: int = typer.Option(8, "--batch_size", "--batch-size", help="Rows generated together per model."),
    detach: bool = typer.Option(False, "-d", "--detach", help="Start it and return at once."),
):
    """Score models on a dataset: one model load each, batched greedy generation, results + scores stored."""
    from mixtrain.errors import WorkflowFailed
    from mixtrain.evals import create as creating
    from mixtrain.evals import engine

    gen = json_arg(config, "--config")
    c = client()
    rec = creating.create(
        c.settings,
        name,
        dataset,
        models,
        fork=True,
        metric=metric,
        image_column=image_column,
        prompt_column=prompt_column,
        reference_column=reference_column,
        config=gen,
        limit=limit,
        batch_size=batch_size,
    )
    number = rec["run"]["number"]
    err_console.print(
        f"[dim]Started eval {name} (run #{number} of {engine.WORKFLOW}) — logs: mixtrain eval logs {name} -f[/]"
    )
    if detach:
        console.print(f"Eval {name} started (detached). See it: mixtrain eval get {name}")
        return
    try:
        engine.follow(c.settings, number, sys.stdout.buffer)
    except KeyboardInterrupt:
        err_console.print(
            f"\nDetached: eval {name} goes on. Follow it: mixtrain eval logs {name} -f — stop it: mixtrain eval cancel {name}"
        )
        raise typer.Exit(130) from None
    rec = c.get_eval_info(name)
    if rec["status"] != "completed":
        raise WorkflowFailed(
            f"eval {name} {rec['status']}: {rec['error'] or 'no reason recorded'}", f"see `mixtrain eval logs {name}`"
        )
    console.print()
    _show(rec)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")):
    """List evals: dataset, metric, models and their scores."""
    rows = client().list_evals()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table("name", "status", "dataset", "metric", "models (score)", "created")
    for r in rows:
        models = ", ".join(f"{m['label']} ({_pct(r['scores'].get(m['label'], {}).get('mean'))})" for m in r["models"])
        t.add_row(r["name"], _status(r["status"]), r["dataset"], r["metric"], models, fmt_time(r["created_at"]))
    console.print(t if rows else "No evals yet — `mixtrain eval create NAME --dataset D --models A,B`.")


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
    from mixtrain.client import get_eval
    from mixtrain.evals.metrics import normalize_answer

    c = client()
    ev = get_eval(name, client=c)
    rows = ev.results().to_arrow().to_pylist()
    rows.sort(key=lambda r: r["row_id"])
    labels = [m["label"] for m in ev.info["models"]]
    if disagreements:
        key = "__score" if ev.info["metric"] != "none" else "__output"
        norm = (lambda v: v) if key == "__score" else normalize_answer
        rows = [r for r in rows if len({norm(r[lab + key]) for lab in labels}) > 1]
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
    from pathlib import Path

    from mixtrain.evals import engine

    c = client()
    rec = c.get_eval_info(name)
    if rec["run"] is None:
        err_console.print(f"eval {name} has no run ({rec['status']})")
        return
    number = rec["run"]["number"]
    if follow:
        engine.follow(c.settings, number)
        return
    path = Path(c.workflows.run(engine.WORKFLOW, number)["log_path"])
    if path.exists():
        sys.stdout.buffer.write(path.read_bytes())
    else:
        err_console.print(f"eval {name} has no log yet ({rec['status']})")


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
    confirm(f"delete eval {name!r} and its results dataset {rec['results_dataset']!r}", yes)
    c.delete_eval(name)
    console.print(f"Deleted eval {name}")


def _show(rec: dict) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{rec['name']}[/]  {_status(rec['status'])}  dataset {rec['dataset']} @ snapshot {rec['snapshot_id']}  metric {rec['metric']}"
    )
    run = rec["run"]
    took = (rec["finished_at"] - rec["created_at"]).total_seconds() if rec["finished_at"] else None
    run_text = f"{run['workflow']} #{run['number']}" if run else "-"
    console.print(
        f"created {fmt_time(rec['created_at'])}  took {fmt_duration(took)}  run {run_text}  results: dataset {rec['results_dataset']}"
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


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/]"


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"
