"""`mixtrain workflow ...` — register workflow files, run them with typed inputs, watch runs."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

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


@app.command("create")
def create(
    files: list[Path] = typer.Argument(..., help="The workflow's .py file (first) and any files it imports."),
    name: str = typer.Option(..., "--name", "-n", help="Workflow name."),
    description: str = typer.Option("", "--description", help="What it does."),
    entrypoint: str | None = typer.Option(None, "--entrypoint", help="MixFlow class to use when the file has several."),
):
    """Register a workflow from its Python file(s)."""
    wf = client().create_workflow(files, name, description, entrypoint)
    console.print(
        f"Created workflow [bold]{name}[/] (version {wf['version']}, entrypoint {wf['entrypoint']}, {len(wf['inputs'])} inputs)"
    )
    console.print(f"Run it: mixtrain workflow run {name} --help")


@app.command("update")
def update_(
    name: str,
    files: list[Path] = typer.Argument(..., help="The new version's files."),
    description: str | None = typer.Option(None, "--description"),
    entrypoint: str | None = typer.Option(None, "--entrypoint"),
):
    """Register a new version of a workflow."""
    wf = client().update_workflow(name, files, description, entrypoint)
    console.print(f"Updated workflow [bold]{name}[/] to version {wf['version']}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")):
    """List workflows."""
    rows = client().list_workflows()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table("name", "version", "runs", "created", "description")
    for r in rows:
        t.add_row(r["name"], str(r["version"]), str(r["runs"]), fmt_time(r["created_at"]), r["description"])
    console.print(t if rows else "No workflows yet — create one with `mixtrain workflow create FILE --name NAME`.")


@app.command("get")
def get(name: str, as_json: bool = typer.Option(False, "--json")):
    """Show a workflow: description, entrypoint, inputs, versions and recent runs."""
    c = client()
    c.reconcile_runs(name)
    wf = c.get_workflow(name)
    if as_json:
        print_json(wf)
        return
    console.print(f"[bold]{wf['name']}[/]  {wf['description']}")
    console.print(f"entrypoint: {wf['entrypoint']}   version: {wf['version']} ({len(wf['versions'])} in all)")
    res = {k: v for k, v in wf["resources"].items() if v}
    if res:
        console.print("resources: " + ", ".join(f"{k}={v}" for k, v in res.items()))
    console.print(_inputs_table(wf["inputs"]))
    if wf["runs"]:
        console.print(_runs_table(wf["runs"]))
    else:
        console.print("No runs yet.")


@app.command("runs")
def runs_(
    name: str,
    n: int = typer.Option(20, "-n", "--limit", min=1, help="How many recent runs."),
    user: str | None = typer.Option(None, "--user", help="Only the runs this user (MIXTRAIN_USER) started."),
    as_json: bool = typer.Option(False, "--json"),
):
    """List a workflow's runs: number, status, who started it, start, end, duration."""
    c = client()
    c.reconcile_runs(name)
    rows = c.list_runs(name, n, user=user)
    if as_json:
        print_json(rows)
        return
    console.print(_runs_table(rows) if rows else f"No runs of {name} yet" + (f" by {user}." if user else "."))


@app.command("logs")
def logs(
    name: str,
    run: int = typer.Argument(..., help="Run number."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until the run ends."),
):
    """Print a run's log."""
    c = client()
    c.reconcile_runs(name, run)
    info = c.get_run(name, run)
    if follow:
        c.follow_run(name, run)
        return
    text = c.run_log(name, run)
    if text is not None:
        sys.stdout.buffer.write(text)
    else:
        err_console.print(f"run #{run} has no log yet ({info['status']})")


@app.command("metrics")
def metrics(
    name: str,
    run: int = typer.Argument(..., help="Run number."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per logged step."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a PNG of the loss curve (train and eval) to this file."
    ),
):
    """Show the training metrics a run recorded per step (loss, learning rate, grad norm, eval loss, ...)."""
    rows = client().get_run_metrics(name, run)
    if as_json:
        print_json(rows)
    elif not rows and plot is None:
        console.print(f"Run #{run} of {name} recorded no training metrics (it never reached a training step).")
    elif plot is None:
        console.print(_metrics_table(rows))
    if plot is not None:
        if not rows:
            from mixtrain.errors import InvalidInput

            raise InvalidInput(f"run #{run} of {name} has no metrics to plot", "plot a run that trained")
        from mixtrain.cli.plots import plot_loss

        plot_loss(rows, plot, title=f"{name} run #{run}")
        err_console.print(f"Wrote {plot}")


def _metrics_table(rows: list[dict]):
    from rich.table import Table

    logged = set().union(*rows)
    names = [k for k in TABLE_METRICS if k in logged]
    t = Table("step", "epoch", *(TABLE_METRICS[k] for k in names))
    for r in rows:
        t.add_row(str(r["step"]), _num(r.get("epoch")), *(_num(r.get(k)) for k in names))
    rest = sorted(logged - set(names) - {"step", "epoch"})
    if rest:
        t.caption = f"also recorded (see --json): {', '.join(rest)}"
    return t


# The columns of the table view (key → header); every recorded metric is in --json.
TABLE_METRICS = {
    "loss": "loss",
    "eval_loss": "eval loss",
    "learning_rate": "lr",
    "grad_norm": "grad norm",
    "tokens/train_per_sec_per_gpu": "tokens/s",
}


def _num(v) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@app.command("resume")
def resume(
    name: str,
    run: int = typer.Argument(..., help="Number of the failed or cancelled run."),
    detach: bool = typer.Option(False, "-d", "--detach", help="Return at once."),
):
    """Continue a failed or cancelled run from its latest complete checkpoint, as a new run with the same inputs."""
    c = client()
    info = c.resume_run(name, run, detach=True, fork=True)
    origin = info["resumed_from"]
    err_console.print(
        f"[dim]Started run #{info['number']} of {name}, resuming run #{run} from step {origin['step']} — logs: mixtrain workflow logs {name} {info['number']} -f[/]"
    )
    if detach:
        console.print(f"Run #{info['number']} of {name} started (detached).")
        return
    _attach(c, name, info)


@app.command("cancel")
def cancel(name: str, run: int = typer.Argument(..., help="Run number.")):
    """Cancel a pending or running run (its whole process tree)."""
    info = client().cancel_run(name, run)
    console.print(f"Run #{run} of {name}: {info['status']}")


@app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "-y", "--yes")):
    """Delete a workflow, its versions and run records (refused while a run is active)."""
    c = client()
    c.get_workflow(name)  # NotFound before asking
    confirm(f"delete workflow {name!r} and its run history", yes)
    c.delete_workflow(name)
    console.print(f"Deleted workflow {name}")


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def run(ctx: typer.Context, name: str = typer.Argument(None, help="Workflow name.")):
    """Run a workflow: mixtrain workflow run NAME --input value ... (NAME --help lists the inputs)."""
    from mixtrain.cli import run_options

    args = list(ctx.args)
    if name in (None, "-h", "--help"):
        console.print(ctx.get_help())
        return
    c = client()
    spec = c.workflow_spec(name)
    parsed = run_options.parse(args, spec)
    if parsed.help:
        _print_run_help(name, spec)
        return
    info = c.start_run(name, parsed.inputs, from_text=True, fork=True, num_nodes=parsed.num_nodes)
    number = info["number"]
    err_console.print(f"[dim]Started run #{number} of {name} — logs: mixtrain workflow logs {name} {number} -f[/]")
    if parsed.detach:
        console.print(f"Run #{number} of {name} started (detached).")
        return
    _attach(c, name, info)


def _attach(c, name: str, info: dict) -> None:
    """Follow a started run in the compact view until it ends; a failure raises with the run's reason."""
    from mixtrain.cli.live import CompactView

    number = info["number"]
    view = CompactView(Path(info["run_dir"]))
    try:
        final = c.follow_run(name, number, view, on_tick=view.tick)
    except KeyboardInterrupt:
        view.close({"status": "detached"})
        err_console.print(
            f"\nDetached: run #{number} goes on. Follow it: mixtrain workflow logs {name} {number} -f — stop it: mixtrain workflow cancel {name} {number}"
        )
        raise typer.Exit(130) from None
    view.close(final)
    took = fmt_duration(final["duration"])
    if final["status"] == "completed":
        err_console.print(f"[green]Run #{number} completed[/] in {took}")
        return
    from mixtrain.errors import WorkflowFailed

    raise WorkflowFailed(
        f"run #{number} of {name} {final['status']}: {final['error'] or 'no reason recorded'}",
        f"see `mixtrain workflow logs {name} {number}`",
    )


def _print_run_help(name: str, spec: dict) -> None:
    console.print(f"Usage: mixtrain workflow run {name} [--INPUT VALUE ...] [-i JSON|FILE] [-d] [--num_nodes N]\n")
    if spec.get("doc"):
        console.print(spec["doc"].strip().splitlines()[0] + "\n")
    console.print(_inputs_table(spec["inputs"]))
    console.print(
        "Flags override -i/--input-json/-c/--config JSON; -d/--detach returns at once; booleans take true/false or --no-NAME;"
        " --num_nodes N trains on N nodes of the Ray cluster (MIXTRAIN_RAY_ADDRESS)."
    )
    example = " ".join(f"--{i['name']} {_example_value(i)}" for i in spec["inputs"] if i["required"])
    console.print(f"\nExample:\n  mixtrain workflow run {name} {example}".rstrip())


def _example_value(inp: dict) -> str:
    if inp.get("choices"):
        return str(inp["choices"][0])
    return {"int": "1", "float": "0.1", "bool": "true", "list": "'[]'", "dict": "'{}'"}.get(inp["type"], "VALUE")


def _inputs_table(inputs: list[dict]):
    from rich.table import Table

    from mixtrain.workflows.spec import bounds_text

    t = Table("input", "required / default", "type", "description", title="Inputs", title_justify="left")
    for i in inputs:
        req = "[bold]required[/]" if i["required"] else repr(i["default"]) if i["default"] != "" else "''"
        typ = i["type"] + (
            f" ({'|'.join(str(c) if c != '' else repr(c) for c in i['choices'])})" if i.get("choices") else ""
        )
        typ += f" ({bounds_text(i)})" if bounds_text(i) else ""
        t.add_row("--" + i["name"], req, typ, i.get("description") or "")
    return t


def _runs_table(rows: list[dict]):
    from rich.table import Table

    from mixtrain.records import shown_user

    t = Table("run", "status", "user", "started", "finished", "duration", "error")
    for r in rows:
        err = (r.get("error") or "")[:60]
        t.add_row(
            f"#{r['number']}",
            status_markup(r["status"]),
            shown_user(r.get("created_by")),
            fmt_time(r["started_at"] or r["created_at"]),
            fmt_time(r["finished_at"]),
            fmt_duration(r["duration"]),
            err,
        )
    return t
