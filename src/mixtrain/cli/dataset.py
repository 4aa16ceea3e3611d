"""`mixtrain dataset ...`"""

from __future__ import annotations

from pathlib import Path

import typer

from mixtrain.cli.common import client, confirm, console, print_json

app = typer.Typer(no_args_is_help=True, add_completion=False)  # its one-line help: NOUNS in cli/main.py
PROGRESS_MIN_BYTES = 32 << 20


def _with_progress(path: Path, action):
    """Run ``action(progress_callback)``, drawing a progress bar for large files."""
    size = path.stat().st_size if path.is_file() else 0
    if size < PROGRESS_MIN_BYTES or not console.is_terminal:
        return action(None)
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"reading {path.name}", total=size)
        return action(lambda done: bar.update(task, completed=done))


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Dataset name (lowercase letters, digits, - and _)."),
    file_arg: Path | None = typer.Argument(None, metavar="[FILE]", help="CSV, TSV, Parquet or JSONL file."),
    file: Path | None = typer.Option(None, "--file", "-f", help="CSV, TSV, Parquet or JSONL file."),
    iceberg: str | None = typer.Option(
        None, "--iceberg", help="Register an existing Iceberg table by its metadata JSON (no copy)."
    ),
    description: str = typer.Option("", "--description", "-d", help="What the dataset holds."),
    fmt: str | None = typer.Option(
        None, "--format", help="csv, tsv, parquet, jsonl, json, hf, imagefolder or webdataset (default: detected)."
    ),
    image_root: Path | None = typer.Option(
        None, "--image_root", help="Folder relative image paths start from (default: next to the file)."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Fixed prompt for a captions-only imagefolder."),
    keep_image_refs: bool = typer.Option(
        False, "--keep_image_refs", help="Keep image paths/URLs as references (verified) instead of storing the images."
    ),
):
    """Create a dataset from a file or folder (images stored with it), or register an existing Iceberg table."""
    from mixtrain.errors import InvalidInput

    sources = [s for s in (file_arg, file, iceberg) if s]
    if len(sources) != 1:
        raise InvalidInput("give exactly one source", "pass FILE, --file FILE or --iceberg METADATA_JSON")
    c = client()
    if iceberg:
        s = c.register_dataset(name, iceberg, description)
    else:
        path = Path(sources[0])
        read = {"fmt": fmt, "image_root": image_root, "prompt": prompt, "keep_image_refs": keep_image_refs}
        s = _with_progress(path, lambda cb: c.create_dataset(name, path, description, cb, **read))
        _report_images(c.last_import_report)
    console.print(
        f"Created dataset [bold]{name}[/] — {s['rows']} rows, {len(s['columns'])} columns, version {s['version']}"
    )


@app.command("append")
def append(
    name: str = typer.Argument(..., help="Dataset name."),
    file_arg: Path | None = typer.Argument(None, metavar="[FILE]"),
    file: Path | None = typer.Option(None, "--file", "-f", help="File with the same columns."),
    fmt: str | None = typer.Option(None, "--format", help="Input format (default: detected)."),
    image_root: Path | None = typer.Option(None, "--image_root", help="Folder relative image paths start from."),
    prompt: str | None = typer.Option(None, "--prompt", help="Fixed prompt for a captions-only imagefolder."),
    keep_image_refs: bool = typer.Option(False, "--keep_image_refs", help="Keep image paths/URLs as references."),
):
    """Append rows from a file as a new dataset version."""
    from mixtrain.errors import InvalidInput

    path = file or file_arg
    if path is None or (file and file_arg):
        raise InvalidInput("give exactly one file", "pass FILE or --file FILE")
    c = client()
    read = {"fmt": fmt, "image_root": image_root, "prompt": prompt, "keep_image_refs": keep_image_refs}
    s = _with_progress(Path(path), lambda cb: c.append_dataset(name, path, cb, **read))
    _report_images(c.last_import_report)
    console.print(f"Appended to [bold]{name}[/] — now {s['rows']} rows, version {s['version']}")


def _report_images(report, shown: int = 10) -> None:
    """Images stored, and the images that did not decode, by row (never their bytes)."""
    if report is None or not report.columns:
        return
    from mixtrain.cli.common import err_console

    if report.images:
        console.print(f"Stored {report.images} image(s) with the dataset (columns: {', '.join(report.columns)})")
    for col in report.kept_as_text:
        first = next((why for _, c, _, why in report.bad if c == col), "")
        err_console.print(
            f"No image of column {col} could be read ({first[:200]}): kept as the paths written; "
            "training and evals check them again",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    bad = [b for b in report.bad if b[1] not in report.kept_as_text]
    if bad:
        err_console.print(
            f"{len(bad)} image(s) cannot be used; training and evals report their rows as bad rows:",
            markup=False,
            soft_wrap=True,
        )
        for row, col, _source, why in bad[:shown]:
            err_console.print(f"  row {row} ({col}): {why[:300]}", markup=False, highlight=False, soft_wrap=True)
        if len(bad) > shown:
            err_console.print(f"  … and {len(bad) - shown} more", markup=False)


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    user: str | None = typer.Option(None, "--user", help="Only the datasets this user (MIXTRAIN_USER) created."),
):
    """List datasets."""
    rows = client().list_dataset_infos(user=user)
    if as_json:
        keys = ("name", "description", "rows", "version", "location", "created_by")
        print_json([{k: r[k] for k in keys} for r in rows])
        return
    from rich.table import Table

    from mixtrain.records import shown_user

    t = Table("name", "rows", "columns", "versions", "user", "description")
    for r in rows:
        t.add_row(
            r["name"],
            str(r["rows"]),
            str(len(r["columns"])),
            str(r["versions"]),
            shown_user(r["created_by"]),
            r["description"],
        )
    if rows:
        console.print(t)
    elif user:
        console.print(f"No datasets created by {user}.")
    else:
        console.print("No datasets yet — create one with `mixtrain dataset create NAME --file data.csv`.")


@app.command("get")
def get(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show a dataset's schema, row count, versions and location."""
    s = client().get_dataset_info(name)
    if as_json:
        print_json(s)
        return
    console.print(f"[bold]{s['name']}[/]  {s['description']}")
    console.print(f"rows: {s['rows']}   versions: {s['versions']}   current version: {s['version']}")
    console.print(f"location: {s['location']}")
    if s["source"]:
        console.print(f"source: {s['source']}")
    from rich.table import Table

    t = Table("column", "type")
    for col in s["columns"]:
        t.add_row(col["name"], col["type"])
    console.print(t)


@app.command("versions")
def versions(name: str, as_json: bool = typer.Option(False, "--json")):
    """List a dataset's versions (Iceberg snapshots)."""
    import datetime as dt

    rows = client().dataset_versions(name)
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table("version", "created", "operation", "added rows", "total rows")
    for r in rows:
        when = dt.datetime.fromtimestamp(r["timestamp_ms"] / 1000).strftime("%Y-%m-%d %H:%M:%S")
        t.add_row(str(r["version"]), when, r["operation"], str(r["added_rows"]), str(r["total_rows"]))
    console.print(t)


@app.command("head")
def head(
    name: str,
    n: int = typer.Option(5, "-n", "--rows", min=1, help="Rows to show."),
    version: int | None = typer.Option(None, "--version", help="Snapshot id (default: current)."),
):
    """Show the first rows of a dataset."""
    df = client().head_dataset(name, n, version)
    from rich.table import Table

    t = Table(*[str(c) for c in df.columns])
    for row in df.itertuples(index=False):
        t.add_row(*[_cell(v) for v in row])
    console.print(t)


def _cell(v) -> str:
    from mixtrain.images import ref_label

    if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
        v = ref_label(v)
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."


@app.command("query")
def query(
    name: str = typer.Argument(..., help="Dataset the query reads (other datasets it names are read too)."),
    sql: str = typer.Argument(..., help='DuckDB SQL, e.g. "SELECT label, count(*) FROM NAME GROUP BY label".'),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
    limit: int | None = typer.Option(None, "--limit", min=0, help="At most N rows."),
    save: str | None = typer.Option(None, "--save", help="Save the result as a new dataset NEW."),
    snapshot: int | None = typer.Option(None, "--snapshot", help="Snapshot id of NAME (default: current)."),
):
    """Run SQL over a dataset (e.g. a filtered subset or a train/test split); --save keeps the result."""
    c = client()
    if save:
        result, saved = c.save_query(save, sql, dataset=name, snapshot_id=snapshot, limit=limit)
        console.print(f"Saved {result.num_rows} rows as dataset [bold]{save}[/] ({saved.description})", highlight=False)
        return
    result = c.query(sql, dataset=name, snapshot_id=snapshot, limit=limit)
    rows = result.to_pylist()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    shown = 100
    t = Table(*result.column_names)
    for row in rows[:shown]:
        t.add_row(*[_cell(v) for v in row.values()])
    console.print(t)
    if len(rows) > shown:
        console.print(f"… {len(rows) - shown} more rows (use --json, --limit or --save)")


@app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask.")):
    """Delete a dataset and its data."""
    c = client()
    c.require_dataset(name)  # reads no table file: a damaged dataset can still be deleted
    confirm(f"delete dataset {name!r} and all its versions", yes)
    c.delete_dataset(name)
    console.print(f"Deleted dataset {name}")
