"""The eval itself, inside its run's worker process: one model load per model, batched generation,
per-row scores, summary statistics, then the results table and the scores in one final step each.

Runs as ``MixtrainEval.run`` (see ``eval_flow.py``); stdout is the run log, so progress lines here are
what `mixtrain eval create` and `mixtrain eval logs` show. An unreadable image fails its row (for
every model: the row is counted and listed), never the eval.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping

from mixtrain.evals.metrics import paired_bootstrap, score, summarize
from mixtrain.evals.store import EvalStore
from mixtrain.images import cell_refs
from mixtrain.models.quiet import quiet_native_stderr
from mixtrain.settings import Settings, load_settings


def run_eval(name: str, settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    store = EvalStore(settings)
    rec = _own_record(store, name)
    store.set_status(name, "running")
    try:
        result = _evaluate(settings, rec, store)
    except BaseException as exc:
        store.set_status(name, "failed", error=str(exc)[:4000] or type(exc).__name__)
        raise
    store.complete(name, result["scores"], result["failures"], result["comparison"])
    return {
        "eval": name,
        "results_dataset": rec["results_dataset"],
        "scores": result["scores"],
        "comparison": result["comparison"],
    }


def _own_record(store: EvalStore, name: str, wait: float = 30.0) -> dict:
    """The eval's record once it names this run: `eval create`/`eval resume` attach the run just after
    starting it. A run the record does not name (a resume that lost a race) does nothing."""
    from mixtrain.errors import Conflict
    from mixtrain.workflows.context import current_run

    ctx = current_run()
    end = time.monotonic() + wait
    while True:
        rec = store.get(name)
        mine = ctx is None or ctx.id is None or store.run_id(name) in (None, ctx.id)
        if mine and rec.status.is_active:
            return {**rec, "results_dataset": store.results_name(name)}  # what this run will write
        if time.monotonic() >= end:
            raise Conflict(f"eval {name!r} is not waiting for this run ({rec.status})", "nothing to do")
        time.sleep(0.1)


def _evaluate(settings: Settings, rec: Mapping, store: EvalStore) -> dict:
    from mixtrain.datasets.store import DatasetStore

    cfg = rec["config"]
    datasets = DatasetStore(settings)
    rows = load_rows(datasets, rec)
    print(
        f"eval {rec['name']}: {len(rows)} rows of {rec['dataset']} @ snapshot {rec['snapshot_id']}, "
        f"metric {rec['metric']}, {len(rec['models'])} model(s), batch size {cfg['batch_size']}",
        flush=True,
    )
    images, failures = load_images(rows, settings)
    for f in failures:
        print(f"  row {f['row_id']}: {f['reason']} — counted as failed", flush=True)
    ok = [i for i, img in enumerate(images) if img is not None]  # images[i]: the row's decoded images
    outputs: dict[str, list] = {}
    scores: dict[str, dict] = {}
    finished = store.finished_models(rec["name"])  # by an earlier run of this eval (`eval resume`)
    from mixtrain.models.registry import ModelRegistry

    kept = {lab for lab, earlier in finished.items() if len(earlier["rows"]["outputs"]) == len(rows)}  # whole
    registry = ModelRegistry(settings)  # the records of the models still to run, read once
    infos = {m["label"]: registry.get(m["name"], m["version"]) for m in rec["models"] if m["label"] not in kept}
    _lean_if_one_stack([info["base_model"] for info in infos.values()])
    for m in rec["models"]:
        lab = m["label"]
        if lab in kept:
            earlier = finished[lab]
            outputs[lab], per_row = earlier["rows"]["outputs"], earlier["rows"]["scores"]
            scores[lab] = {**earlier["summary"], "_rows": per_row}
            print(f"[{lab}] finished in an earlier run: its {len(rows)} results are kept", flush=True)
            continue
        out, seconds = generate_all(
            settings, infos[lab], lab, [rows[i]["prompt"] for i in ok], [images[i] for i in ok], cfg
        )
        column: list = [None] * len(rows)
        for i, text in zip(ok, out, strict=False):
            column[i] = text
        outputs[lab] = column
        per_row = [score(rec["metric"], column[i], rows[i]["reference"]) for i in range(len(rows))]
        summary = (
            summarize(per_row)
            if rec["metric"] != "none"
            else {"mean": None, "ci_low": None, "ci_high": None, "n": len(ok)}
        )
        scores[lab] = {**summary, "failed": len(failures), "generation_s": round(seconds, 3), "_rows": per_row}
        # kept at once: a kill from here on loses nothing of this model
        store.save_model(rec["name"], lab, scores[lab], failures, {"outputs": column, "scores": per_row})
        print(
            f"  {lab}: {_fmt_summary(rec['metric'], summary)}  ({len(failures)} failed, {seconds:.1f}s generating)",
            flush=True,
        )
    comparison = None
    labels = [m["label"] for m in rec["models"]]
    if rec["metric"] != "none" and len(labels) >= 2:
        a, b = labels[0], labels[1]
        comparison = {"a": a, "b": b, **paired_bootstrap(scores[a]["_rows"], scores[b]["_rows"])}
        if comparison["diff"] is not None:
            print(
                f"  {a} − {b}: {comparison['diff']:+.3f} (95% CI {comparison['ci_low']:+.3f} … {comparison['ci_high']:+.3f}), paired bootstrap p = {comparison['p_value']:.4f}",
                flush=True,
            )
    write_results(datasets, rec, rows, outputs, {lab: s.pop("_rows") for lab, s in scores.items()})
    print(
        f"results: dataset {rec['results_dataset']} ({len(rows)} rows) — `mixtrain eval results {rec['name']}`",
        flush=True,
    )
    return {"scores": scores, "failures": failures, "comparison": comparison}


def load_rows(datasets, rec: Mapping) -> list[dict]:
    """The eval's columns at its pinned snapshot, as {row_id, images, image, prompt, reference}.

    ``images``: every image of the cell (one, a list, stored references); ``reference``: a text, or a
    list of acceptable answers (VQA's ten) kept as a list for the metric."""
    cfg = rec["config"]
    table = datasets.get(rec["dataset"])
    cols = [c for c in (cfg["image_column"], cfg["prompt_column"], cfg["reference_column"]) if c]
    data = (
        table.scan(snapshot_id=rec["snapshot_id"], selected_fields=tuple(dict.fromkeys(cols)), limit=cfg["limit"])
        .to_arrow()
        .to_pylist()
    )
    source_dirs = datasets.source_dirs(rec["dataset"])
    refs_of = _refs_of(datasets, source_dirs)
    out = []
    for i, r in enumerate(data):
        ref = cfg["reference_column"]
        images = refs_of(r[cfg["image_column"]])
        value = None if not ref else r[ref]
        out.append(
            {
                "row_id": i,
                "images": images,
                "image": images[0] if images else "",
                "prompt": "" if r[cfg["prompt_column"]] is None else str(r[cfg["prompt_column"]]),
                "reference": None
                if value is None
                else [str(v) for v in value if v is not None]
                if isinstance(value, (list, tuple))
                else str(value),
            }
        )
    return out


def _refs_of(datasets, source_dirs: list[str]):
    """Any image cell → references (``mixtrain.images.cell_refs``: strings, stored references, lists)."""
    warehouse = datasets.image_warehouse()
    return lambda cell: cell_refs(cell, warehouse=warehouse, source_dirs=source_dirs)


def load_images(rows: list[dict], settings: Settings) -> tuple[list, list[dict]]:
    """Decode every image once (shared by all models); a bad one becomes a listed row failure."""
    from mixtrain.errors import InvalidInput, MixtrainError
    from mixtrain.images import load_image
    from mixtrain.models.generate import placeholders

    images: list = []
    failures = []
    for r in rows:
        current = ""
        try:
            if not r["images"]:
                raise InvalidInput("the row has no image", "fill its image column")
            marks = placeholders(r["prompt"])
            if marks and marks != len(r["images"]):
                raise InvalidInput(
                    f"the prompt has {marks} <image> placeholder(s) but the row has {len(r['images'])} image(s)",
                    "one <image> per image",
                )
            loaded = []
            for current in r["images"]:
                loaded.append(load_image(current, settings.image_cache))
            images.append(loaded)
        except (MixtrainError, OSError, ValueError) as exc:
            images.append(None)
            failures.append(
                {"row_id": r["row_id"], "image": current or r["image"], "reason": str(exc).splitlines()[0][:300]}
            )
    return images, failures


def _lean_if_one_stack(base_models: list[str]) -> None:
    """This process is the eval's own worker (evals/eval_flow.py): its models load without the integrations
    inference never uses (models/_fastimport.py), when one lean import suits them all."""
    from mixtrain.models import _fastimport

    if _fastimport.one_stack(base_models):
        _fastimport.enable()


def generate_all(
    settings: Settings, info: Mapping, lab: str, prompts: list[str], images: list, cfg: dict
) -> tuple[list[str], float]:
    """Load model ``info`` (labelled ``lab``) once, generate in batches with progress (rows/s, ETA), free it;
    returns (texts, seconds)."""
    n, bs = len(prompts), cfg["batch_size"]
    if n == 0:
        print(f"[{lab}] no readable rows: not loading the model", flush=True)
        return [], 0.0
    from mixtrain.models.generate import image_prompt
    from mixtrain.models.inference import LoadedModel

    print(f"[{lab}] loading {info['base_model']}{' + adapter' if info['adapter_path'] else ''}", flush=True)
    with quiet_native_stderr():
        model = LoadedModel(info, settings)
    print(f"[{lab}] loaded in {model.load_seconds:.1f}s; generating {n} rows", flush=True)
    texts: list[str] = []
    spent = 0.0
    for start in range(0, n, bs):
        batch = images[start : start + bs]
        conversations = [image_prompt(p, len(imgs)) for p, imgs in zip(prompts[start : start + bs], batch, strict=True)]
        t0 = time.perf_counter()
        gens = model.generate(conversations, batch, **cfg["generation"])
        spent += time.perf_counter() - t0
        texts.extend(g.text for g in gens)
        done = len(texts)
        rate = done / spent if spent > 0 else float("inf")
        eta = (n - done) / rate if rate and rate != float("inf") else 0.0
        print(f"[{lab}] {done}/{n} rows · {rate:.1f} rows/s · ETA {eta:.0f}s", flush=True)
    del model
    gc.collect()
    return texts, spent


def write_results(datasets, rec: Mapping, rows: list[dict], outputs: dict[str, list], per_row: dict[str, list]) -> None:
    """One Iceberg table, created and filled in one commit: row_id, image, prompt, reference, then per
    model ``<label>__output`` and ``<label>__score``."""
    import json

    import pyarrow as pa

    columns = {
        "row_id": pa.array([r["row_id"] for r in rows], pa.int64()),
        "image": pa.array([r["image"] for r in rows], pa.string()),
        "prompt": pa.array([r["prompt"] for r in rows], pa.string()),
        # several acceptable answers are kept as their JSON list
        "reference": pa.array(
            [json.dumps(r["reference"]) if isinstance(r["reference"], list) else r["reference"] for r in rows],
            pa.string(),
        ),
    }
    if any(len(r["images"]) > 1 for r in rows):  # multi-image rows: every image, beside the first
        columns["images"] = pa.array([r["images"] for r in rows], pa.list_(pa.string()))
    for m in rec["models"]:
        columns[f"{m['label']}__output"] = pa.array(outputs[m["label"]], pa.string())
        columns[f"{m['label']}__score"] = pa.array(per_row[m["label"]], pa.float64())
    datasets.create_from_arrow(
        rec["results_dataset"],
        pa.table(columns),
        description=f"results of eval {rec['name']}",
        source=f"eval {rec['name']}",
    )


def _fmt_summary(metric: str, s: dict) -> str:
    if metric == "none" or s["mean"] is None:
        return f"outputs only (n={s['n']})"
    return f"{metric} {s['mean']:.3f} (95% CI {s['ci_low']:.3f} … {s['ci_high']:.3f}, n={s['n']})"
