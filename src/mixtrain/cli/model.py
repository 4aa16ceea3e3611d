"""`mixtrain model ...` — registered fine-tuned models: lineage, inference, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from mixtrain.cli.common import client, confirm, console, fmt_time, print_json

app = typer.Typer(help="Registered models: inspect, query with an image and a prompt, export.", no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")):
    """List models (latest version of each)."""
    rows = client().list_models()
    if as_json:
        print_json([{k: r[k] for k in ("name", "version", "base_model", "model_type", "train_loss", "created_at")} for r in rows])
        return
    from rich.table import Table

    t = Table("name", "version", "type", "base model", "train loss", "created")
    for r in rows:
        t.add_row(r["name"], str(r["version"]), r["model_type"], r["base_model"], _loss(r["train_loss"]), fmt_time(r["created_at"]))
    console.print(t if rows else "No models yet — a fine-tune run registers one.")


def _loss(v) -> str:
    return "-" if v is None else f"{v:.4f}"


@app.command("get")
def get(
    name: str,
    version: Optional[int] = typer.Option(None, "--version", "-v", help="Version (default: latest)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Show a model version and its lineage (base model, dataset snapshot, run, params, loss, versions)."""
    c = client()
    m = c.get_model_info(name, version)
    evals = _evals_of(c, name)
    if as_json:
        print_json({**m, "evals": evals})
        return
    lin = m["lineage"]
    console.print(f"[bold]{m['name']}[/] version {m['version']}  ({m['model_type']}, registered {fmt_time(m['created_at'])})")
    console.print(f"base model:   {m['base_model']}")
    console.print(f"adapter:      {m['adapter_path']}")
    ds = lin.get("dataset") or {}
    console.print(f"dataset:      {ds.get('name')} @ snapshot {ds.get('snapshot_id')} ({ds.get('rows_used')} rows)")
    run = lin.get("workflow_run") or {}
    if run.get("workflow"):
        console.print(f"workflow run: {run['workflow']} #{run['number']}")
    console.print(f"train loss:   {_loss(m['train_loss'])}   steps: {lin.get('global_step')}   epochs: {lin.get('epochs')}")
    console.print("versions:     " + ", ".join(f"{k} {v}" for k, v in (lin.get("versions") or {}).items() if v))
    params = lin.get("params") or {}
    console.print("params:       " + " ".join(f"{k}={v}" for k, v in params.items() if k not in ("dataset_name", "output_model_name")))
    if evals:
        console.print("evals:")
        for e in evals:
            score = "-" if e["mean"] is None else f"{e['mean'] * 100:.1f}%"
            console.print(f"  {e['eval']:24} v{e['version']}  {e['metric']} {score}  on {e['dataset']}  ({e['status']})")
    else:
        console.print(f"evals:        none yet (`mixtrain eval create NAME --dataset D --models {name}`)")


def _evals_of(c, name: str) -> list[dict]:
    """Every eval this model (any version) appears in, with its score there."""
    out = []
    for rec in c.evals.for_model(name):
        for mod in rec["models"]:
            if mod["name"] == name:
                s = rec["scores"].get(mod["label"]) or {}
                out.append({"eval": rec["name"], "version": mod["version"], "label": mod["label"], "dataset": rec["dataset"],
                            "metric": rec["metric"], "status": rec["status"], "mean": s.get("mean"), "ci_low": s.get("ci_low"), "ci_high": s.get("ci_high")})
    return out


@app.command("versions")
def versions(name: str, as_json: bool = typer.Option(False, "--json")):
    """List a model's versions."""
    rows = client().models.versions(name)
    if as_json:
        print_json([{k: r[k] for k in ("version", "base_model", "train_loss", "adapter_path", "created_at")} for r in rows])
        return
    from rich.table import Table

    t = Table("version", "base model", "dataset", "train loss", "created")
    for r in rows:
        ds = (r["lineage"].get("dataset") or {})
        t.add_row(str(r["version"]), r["base_model"], f"{ds.get('name')}@{ds.get('snapshot_id')}", _loss(r["train_loss"]), fmt_time(r["created_at"]))
    console.print(t)


@app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "-y", "--yes")):
    """Delete a model, all its versions and their adapter files."""
    c = client()
    c.models.versions(name)
    confirm(f"delete model {name!r} and all its versions", yes)
    c.models.delete(name)
    console.print(f"Deleted model {name}")


@app.command("run")
def run(
    name: str,
    inputs: Optional[str] = typer.Option(None, "--inputs", help='JSON: {"image": PATH_OR_URL, "prompt": TEXT}.'),
    image: Optional[str] = typer.Option(None, "--image", help="Image path or URL."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt text."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help='Generation settings JSON, e.g. {"temperature": 0.2, "max_new_tokens": 64}.'),
    version: Optional[int] = typer.Option(None, "--version", "-v", help="Model version (default: latest)."),
    inputs_file: Optional[Path] = typer.Option(None, "--inputs-file", help="JSONL of inputs: many rows, one model load."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="With --inputs-file: write results JSONL here (default: stdout)."),
    as_json: bool = typer.Option(False, "--json", help="Print generated_text, model, version and latency as JSON."),
):
    """Ask a fine-tuned model about an image."""
    from mixtrain.errors import InvalidInput
    from mixtrain.models.inference import check_inputs, generation_settings

    gen = generation_settings(_json_arg(config, "--config"))
    rows = _rows(inputs, image, prompt, inputs_file)
    for i, row in enumerate(rows):
        try:
            check_inputs(row)
        except InvalidInput as exc:
            raise InvalidInput(f"row {i + 1} of {inputs_file}: {exc.what}" if inputs_file else exc.what, exc.fix) from None
    c = client()
    info = c.get_model_info(name, version)
    from mixtrain.images import resolve_image

    for row in rows:  # fail on a bad image before loading the model
        resolve_image(str(row["image"]), c.settings.image_cache)
    from mixtrain.client import get_model

    with _quiet_native_logs():
        model = get_model(name, info["version"], client=c)
    if inputs_file is None:
        result = model.run(rows[0], **gen)
        result["load_s"] = round(model.load_seconds, 3)
        if as_json:
            print_json(result)
        else:
            print(result["generated_text"])
        return
    out = open(output, "w") if output else sys.stdout
    try:
        for row in rows:
            out.write(json.dumps({"input": row, **model.run(row, **gen)}) + "\n")
            out.flush()
    finally:
        if output:
            out.close()


import contextlib
import os


@contextlib.contextmanager
def _quiet_native_logs():
    """Model loading makes torch/torchao/bitsandbytes print warnings straight to fd 2; keep them unless it fails."""
    if os.environ.get("MIXTRAIN_VERBOSE"):
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.buffer.write(tmp.read()[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _json_arg(value: Optional[str], flag: str):
    if value is None:
        return None
    from mixtrain.errors import InvalidInput

    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{flag}: invalid JSON ({exc.msg} at column {exc.colno})", "quote the JSON in single quotes") from None


def _rows(inputs, image, prompt, inputs_file) -> list[dict]:
    from mixtrain.errors import InvalidInput

    given = sum(x is not None for x in (inputs, inputs_file)) + (1 if image is not None or prompt is not None else 0)
    if given != 1:
        raise InvalidInput("give the inputs one way", "--inputs JSON, or --image and --prompt, or --inputs-file rows.jsonl")
    if inputs is not None:
        return [_json_arg(inputs, "--inputs")]
    if inputs_file is None:
        return [{"image": image, "prompt": prompt}]
    if not inputs_file.is_file():
        raise InvalidInput(f"inputs file not found: {inputs_file}", "pass a JSONL file")
    rows = []
    for n, line in enumerate(inputs_file.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{inputs_file} line {n}: invalid JSON ({exc.msg})", "one JSON object per line") from None
    if not rows:
        raise InvalidInput(f"{inputs_file} has no rows", "one JSON object per line")
    return rows


@app.command("register")
def register(
    name: str,
    base_model: str = typer.Option(..., "--base_model", "--base-model", help="Local model folder or hub id."),
    model_type: str = typer.Option("llava", "--model_type", "--model-type", help="llava, llava_next, qwen2_vl."),
):
    """Register a base model (no adapter) so it can be queried like a fine-tuned one."""
    from mixtrain.vlm.families import get_family

    family = get_family(model_type)
    if Path(base_model).expanduser().is_dir():
        base_model = str(Path(base_model).expanduser().resolve())
    m = client().models.register_base(name, base_model, family.name)
    console.print(f"Registered base model {name} version {m['version']} ({base_model})")


@app.command("export")
def export(
    name: str,
    merged: Path = typer.Option(..., "--merged", help="Folder for a merged full-weight model (safetensors + processor)."),
    version: Optional[int] = typer.Option(None, "--version", "-v"),
):
    """Merge the LoRA adapter into the base model and save a model plain transformers loads."""
    from mixtrain.models.inference import export_merged

    c = client()
    info = c.get_model_info(name, version)
    with _quiet_native_logs():
        out = export_merged(info, c.settings, merged)
    console.print(f"Exported {name} v{info['version']} merged to {out}")
