"""`mixtrain model ...` — registered fine-tuned models: lineage, inference, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from mixtrain.cli import spec_options
from mixtrain.cli.common import client, confirm, console, fmt_time, json_arg, print_json
from mixtrain.serving.spec import ServeSpec, parse_spec

app = typer.Typer(no_args_is_help=True, add_completion=False)  # its one-line help: NOUNS in cli/main.py


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json"),
    user: str | None = typer.Option(
        None, "--user", help="Only versions this user (MIXTRAIN_USER) registered: the latest of each model."
    ),
):
    """List models (latest version of each)."""
    rows = client().list_models(user=user)
    if as_json:
        keys = ("name", "version", "base_model", "model_type", "train_loss", "created_at", "created_by")
        print_json([{k: r[k] for k in keys} for r in rows])
        return
    from rich.table import Table

    from mixtrain.records import shown_user

    t = Table("name", "version", "type", "base model", "train loss", "user", "created")
    for r in rows:
        t.add_row(
            r["name"],
            str(r["version"]),
            r["model_type"],
            r["base_model"],
            _loss(r["train_loss"]),
            shown_user(r["created_by"]),
            fmt_time(r["created_at"]),
        )
    if rows:
        console.print(t)
    else:
        console.print(f"No models registered by {user}." if user else "No models yet — a fine-tune run registers one.")


def _loss(v) -> str:
    return "-" if v is None else f"{v:.4f}"


@app.command("get")
def get(
    name: str,
    version: int | None = typer.Option(None, "--version", "-v", help="Version (default: latest)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Show a model version and its lineage (base model, dataset snapshot, run, params, loss, versions)."""
    c = client()
    m = c.get_model_info(name, version)
    evals = c.model_evals(name)
    if as_json:
        print_json({**m, "evals": evals})
        return
    from mixtrain.records import shown_user

    lin = m["lineage"]
    when = f"registered {fmt_time(m['created_at'])} by {shown_user(m['created_by'])}"
    console.print(f"[bold]{m['name']}[/] version {m['version']}  ({m['model_type']}, {when})")
    console.print(f"base model:   {m['base_model']}")
    training = lin.get("training") or {}
    full = training.get("adapter") == "full"
    console.print(f"{'weights:' if full else 'adapter:'}      {m['adapter_path']}")
    if training:
        counts = (
            f" — {training['trainable_params']:,} of {training['total_params']:,} parameters trained"
            if training.get("trainable_params") is not None
            else ""
        )
        console.print(
            f"training:     --adapter {training['adapter']} --train_vision {training['train_vision']}{counts}"
        )
    ds = lin.get("dataset") or {}
    console.print(f"dataset:      {ds.get('name')} @ snapshot {ds.get('snapshot_id')} ({ds.get('rows_used')} rows)")
    run = lin.get("workflow_run") or {}
    if run.get("workflow"):
        resumed = run.get("resumed_from") or lin.get("resumed_from")
        console.print(
            f"workflow run: {run['workflow']} #{run['number']}"
            + (f" (resumed run #{resumed['run']} from step {resumed['step']})" if resumed else "")
        )
    console.print(
        f"train loss:   {_loss(m['train_loss'])}   steps: {lin.get('global_step')}   epochs: {lin.get('epochs')}   seed: {lin.get('seed', '-')}"
    )
    if lin.get("eval_loss") is not None:
        ev = lin.get("eval") or {}
        where = f"dataset {ev.get('dataset')}" if ev.get("source") == "dataset" else "held-out rows"
        console.print(f"eval loss:    {_loss(lin['eval_loss'])}   ({ev.get('rows')} {where})")
    console.print("versions:     " + ", ".join(f"{k} {v}" for k, v in (lin.get("versions") or {}).items() if v))
    params = lin.get("params") or {}
    console.print(
        "params:       "
        + " ".join(f"{k}={v}" for k, v in params.items() if k not in ("dataset_name", "output_model_name"))
    )
    if evals:
        console.print("evals:")
        for e in evals:
            score = "-" if e["mean"] is None else f"{e['mean'] * 100:.1f}%"
            console.print(
                f"  {e['eval']:24} v{e['version']}  {e['metric']} {score}  on {e['dataset']}  ({e['status']})"
            )
    else:
        console.print(f"evals:        none yet (`mixtrain eval create NAME --dataset D --models {name}`)")


@app.command("versions")
def versions(name: str, as_json: bool = typer.Option(False, "--json")):
    """List a model's versions."""
    rows = client().model_versions(name)
    if as_json:
        keys = ("version", "base_model", "train_loss", "adapter_path", "created_at", "created_by")
        print_json([{k: r[k] for k in keys} for r in rows])
        return
    from rich.table import Table

    from mixtrain.records import shown_user

    t = Table("version", "base model", "dataset", "train loss", "user", "created")
    for r in rows:
        ds = r["lineage"].get("dataset") or {}
        t.add_row(
            str(r["version"]),
            r["base_model"],
            f"{ds.get('name')}@{ds.get('snapshot_id')}",
            _loss(r["train_loss"]),
            shown_user(r["created_by"]),
            fmt_time(r["created_at"]),
        )
    console.print(t)


@app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "-y", "--yes")):
    """Delete a model, all its versions and their adapter files."""
    c = client()
    c.model_versions(name)  # NotFound before asking
    confirm(f"delete model {name!r} and all its versions", yes)
    c.delete_model(name)
    console.print(f"Deleted model {name}")


@app.command("run")
def run(
    name: str,
    inputs: str | None = typer.Option(
        None,
        "--inputs",
        help='JSON: {"image": PATH_OR_URL, "prompt": TEXT} or {"images": [PATH_OR_URL, ...], "prompt": TEXT}.',
    ),
    image: str | None = typer.Option(None, "--image", help="Image path or URL."),
    prompt: str | None = typer.Option(None, "--prompt", help="Prompt text."),
    config: str | None = typer.Option(
        None, "--config", "-c", help='Generation settings JSON, e.g. {"temperature": 0.2, "max_new_tokens": 64}.'
    ),
    version: int | None = typer.Option(None, "--version", "-v", help="Model version (default: latest)."),
    inputs_file: Path | None = typer.Option(None, "--inputs-file", help="JSONL of inputs: many rows, one model load."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="With --inputs-file: write results JSONL here (default: stdout)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print generated_text, model, version and latency as JSON."),
):
    """Ask a fine-tuned model about an image."""
    from mixtrain.models import _fastimport
    from mixtrain.models.inference import generation_settings

    _fastimport.enable()  # this process is ours: skip the optional integrations inference never uses
    gen = generation_settings(json_arg(config, "--config"))
    if inputs_file is not None:
        _rows(inputs, image, prompt, inputs_file)  # only one way of giving inputs
        return _run_file(name, version, inputs_file, output, gen)
    row = _rows(inputs, image, prompt, inputs_file)[0]
    from mixtrain.client import get_model

    c = client()
    result = c.run_model(name, row, gen, version)
    result["load_s"] = round(get_model(name, result["version"], client=c).load_seconds, 3)  # loaded: no reload
    if as_json:
        print_json(result)
    else:
        print(result["generated_text"])


def _run_file(name, version, inputs_file: Path, output, gen) -> None:
    """Every row's result as a JSON line (stdout or ``--output``); exit 1 after them if any row failed."""
    sinks: list = []  # the output file is opened at the first result: a refused request writes nothing

    def write(rec: dict) -> None:
        if not sinks:
            sinks.append(open(output, "w") if output else sys.stdout)
        sinks[0].write(json.dumps(rec) + "\n")
        sinks[0].flush()

    try:
        client().run_model_file(name, inputs_file, write, config=gen, version=version)
    finally:
        if output and sinks:
            sinks[0].close()


def _rows(inputs, image, prompt, inputs_file) -> list[dict]:
    from mixtrain.errors import InvalidInput

    given = sum(x is not None for x in (inputs, inputs_file)) + (1 if image is not None or prompt is not None else 0)
    if given != 1:
        raise InvalidInput(
            "give the inputs one way", "--inputs JSON, or --image and --prompt, or --inputs-file rows.jsonl"
        )
    if inputs is not None:
        return [json_arg(inputs, "--inputs")]
    if inputs_file is None:
        return [{"image": image, "prompt": prompt}]
    if not inputs_file.is_file():
        raise InvalidInput(f"inputs file not found: {inputs_file}", "pass a JSONL file")
    return []


@app.command("register")
def register(
    name: str,
    base_model: str = typer.Option(..., "--base_model", "--base-model", help="Local model folder or hub id."),
    model_type: str = typer.Option(
        "llava",
        "--model_type",
        "--model-type",
        help="llava, llava_next, qwen2_vl, qwen3_vl, gemma3, mllama, smolvlm, internvl, mistral3, pixtral, glm4v, lfm2_vl.",
    ),
):
    """Register a base model (no adapter) so it can be queried like a fine-tuned one.

    The family comes from the model's own config.json, as in the fine-tune (``--model_type`` is corrected
    when it disagrees); a folder that does not exist or a model whose config cannot be read is refused.
    """
    m = client().register_base_model(name, base_model, model_type, log=lambda msg: console.print(msg))
    console.print(f"Registered base model {name} version {m.version} ({m.base_model})")


@app.command("export")
def export(
    name: str,
    merged: Path = typer.Option(
        ..., "--merged", help="Folder for a merged full-weight model (safetensors + processor)."
    ),
    version: int | None = typer.Option(None, "--version", "-v"),
):
    """Merge the LoRA adapter into the base model and save a model plain transformers loads."""
    from mixtrain.models import _fastimport

    _fastimport.enable()
    c = client()
    info = c.get_model_info(name, version)
    out = c.export_model(name, merged, info.version)
    console.print(f"Exported {name} v{info.version} merged to {out}")


def serve(
    models: list[str] = typer.Argument(..., help=ServeSpec.model_fields["models"].description, show_default=False),
    **options,
):
    """Serve models over the OpenAI chat-completions API (images as image_url parts), with dynamic batching."""
    from mixtrain.serving.server import serve as run_server  # the server (torch, FastAPI) loads only when serving

    # every option is ServeSpec's: validated in one go (ports, bounds, exposure) before anything loads
    run_server(parse_spec({"models": models, **spec_options.collect(ServeSpec, options)}))


app.command("serve")(spec_options.command_with(ServeSpec, serve, skip=("models",)))
