"""Step 1 — prepare: dataset at a pinned snapshot → verified images → Axolotl ``messages`` JSONL.

Every image is resolved and decoded before training starts, so a bad path fails in seconds, not
after the model has loaded. Bad rows are reported together (row, image, reason).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from mixtrain.errors import InvalidInput
from mixtrain.images import cell_refs, verify_images
from mixtrain.vlm.spec import FinetuneSpec
from mixtrain.workflows.progress import phase_line

MAX_REPORTED = 20


@dataclass
class PreparedData:
    jsonl: Path
    rows: int
    snapshot_id: int | None
    total_rows: int
    bad_rows: list[tuple[int, str, str]] = field(default_factory=list)
    eval_jsonl: Path | None = None
    eval: dict | None = None  # where the eval rows came from, how many, which (held-out row numbers)

    def report(self) -> dict:
        return {
            "rows_total": self.total_rows,
            "rows_used": self.rows,
            "rows_bad": len(self.bad_rows),
            "dataset_snapshot_id": self.snapshot_id,
            "bad_rows": [{"row": r, "image": ref, "reason": why} for r, ref, why in self.bad_rows],
            "eval": self.eval,
        }


def load_rows(datasets, spec: FinetuneSpec, snapshot_id: int | None = None) -> tuple[list[dict], int | None, list[str]]:
    """Read the three mapped columns at the dataset's current snapshot, or at ``snapshot_id`` (a resumed run)."""
    table = datasets.get(spec.dataset_name)
    snapshot = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    if snapshot_id is not None and snapshot is None:
        raise InvalidInput(
            f"dataset {spec.dataset_name!r} no longer has snapshot {snapshot_id}, which the interrupted run trained on",
            "start a new run with `mixtrain workflow run` on the dataset as it is now",
        )
    available = [f.name for f in table.schema().fields]
    wanted = {
        "image_column": spec.image_column,
        "prompt_column": spec.prompt_column,
        "response_column": spec.response_column,
    }
    missing = [f"{col} (--{param})" for param, col in wanted.items() if col not in available]
    if missing:
        raise InvalidInput(
            f"dataset {spec.dataset_name!r} has no column {', '.join(missing)}",
            f"its columns are: {', '.join(available)} — map them with --image_column/--prompt_column/--response_column",
        )
    if snapshot is None:
        raise InvalidInput(f"dataset {spec.dataset_name!r} has no data", "append rows to it first")
    cols = list(dict.fromkeys(wanted.values()))
    data = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=tuple(cols)).to_arrow().to_pylist()
    return data, snapshot.snapshot_id, datasets.source_dirs(spec.dataset_name)


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def prepare(
    datasets, spec: FinetuneSpec, out_dir: Path, log=print, snapshot_id: int | None = None, split: str = "train"
) -> PreparedData:
    """``datasets`` is the DatasetStore; images are cached under its settings' image cache.

    ``split="train"`` also prepares the eval rows: held out by --val_set_size (drawn with --seed, so
    the same inputs hold out the same rows) or read from --eval_dataset_name (prepared as ``split="eval"``).
    """
    if split == "train" and spec.eval_dataset_name:
        ev = prepare(
            datasets,
            spec.model_copy(update={"dataset_name": spec.eval_dataset_name, "eval_dataset_name": ""}),
            out_dir,
            log,
            split="eval",
        )
    t0 = time.monotonic()
    rows, snapshot_id, source_dirs = load_rows(datasets, spec, snapshot_id)
    warehouse = datasets.warehouse_dir()
    log(
        phase_line(
            f"read dataset {spec.dataset_name}: {len(rows)} rows at snapshot {snapshot_id}", time.monotonic() - t0
        )
    )
    t0 = time.monotonic()
    bad: dict[int, str] = {}
    refs = []
    for i, row in enumerate(rows):
        ref = next(iter(cell_refs(row[spec.image_column], warehouse=warehouse, source_dirs=source_dirs)), "")
        refs.append(ref)
        if not ref:
            bad[i] = f"empty {spec.image_column}"
        elif not _text(row[spec.prompt_column]):
            bad[i] = f"empty {spec.prompt_column}"
        elif not _text(row[spec.response_column]):
            bad[i] = f"empty {spec.response_column}"
    to_check = [r if i not in bad else "" for i, r in enumerate(refs)]
    good, failures = verify_images(
        [r for r in to_check if r],
        datasets.settings.image_cache,
        workers=min(16, (os.cpu_count() or 2) * 4),
        progress=_progress(log),
    )
    reasons = {ref: why for _, ref, why in failures}
    for i, ref in enumerate(to_check):
        if ref and ref in reasons:
            bad[i] = reasons[ref]
    bad_rows = sorted((i, refs[i], why) for i, why in bad.items())
    log(
        phase_line(
            f"verify images: {len(rows) - len(bad_rows)} usable, {len(bad_rows)} unusable rows", time.monotonic() - t0
        )
    )
    heldout = _held_out([i for i in range(len(rows)) if i not in bad], spec) if split == "train" else set()
    result = PreparedData(
        out_dir / f"{split}.jsonl", len(rows) - len(bad) - len(heldout), snapshot_id, len(rows), bad_rows
    )
    if heldout:
        result.eval_jsonl = out_dir / "eval.jsonl"
        result.eval = {
            "source": "val_set_size",
            "val_set_size": spec.val_set_size,
            "seed": spec.seed,
            "rows": len(heldout),
            "held_out_rows": sorted(heldout),
        }
    elif split == "train" and spec.eval_dataset_name:
        result.eval_jsonl = ev.jsonl
        result.eval = {
            "source": "dataset",
            "dataset": spec.eval_dataset_name,
            "snapshot_id": ev.snapshot_id,
            "rows": ev.rows,
        }
    if split == "train":
        (out_dir / "data_report.json").write_text(json.dumps(result.report(), indent=2))
    if bad_rows:
        _log_bad(bad_rows, log)
        if spec.on_bad_image == "fail":
            raise InvalidInput(
                f"{len(bad_rows)} of {len(rows)} rows are unusable (first: row {bad_rows[0][0]}: {bad_rows[0][2]})",
                "fix them, or pass --on_bad_image skip to train without them",
            )
        log(f"skipping {len(bad_rows)} unusable rows (--on_bad_image skip)")
    if result.rows == 0:
        raise InvalidInput(f"dataset {spec.dataset_name!r} has no usable rows", "see the report above")

    def example(i: int) -> str:
        return (
            json.dumps(
                to_messages(
                    good[refs[i]],
                    _text(rows[i][spec.prompt_column]),
                    _text(rows[i][spec.response_column]),
                    image_column=bool(spec.image_size),
                )
            )
            + "\n"
        )

    _write(result.jsonl, (example(i) for i in range(len(rows)) if i not in bad and i not in heldout))
    # Dataset row number of each JSONL line, so the preflight names rows as the user knows them.
    (out_dir / f"{split}_rows.json").write_text(
        json.dumps([i for i in range(len(rows)) if i not in bad and i not in heldout])
    )
    if heldout:
        assert result.eval_jsonl is not None  # set whenever rows are held out
        _write(result.eval_jsonl, (example(i) for i in sorted(heldout)))
    if split == "eval":
        log(f"wrote {result.rows} eval examples to {result.jsonl}")
        return result
    log(f"wrote {result.rows} training examples to {result.jsonl}")  # benchmarks time the preparation by this line
    if result.eval:
        log(
            phase_line(
                f"eval set: {result.eval['rows']} rows ({'held out by --val_set_size' if heldout else 'dataset ' + spec.eval_dataset_name})"
            )
        )
    return result


def _held_out(usable: list[int], spec: FinetuneSpec) -> set[int]:
    """Rows held out for eval loss: a seeded draw, so the same inputs hold out the same rows."""
    if not spec.val_set_size:
        return set()
    k = max(1, round(len(usable) * spec.val_set_size))
    if k >= len(usable):
        raise InvalidInput(
            f"--val_set_size {spec.val_set_size} leaves no training rows out of {len(usable)}",
            "use a smaller fraction or more rows",
        )
    return set(random.Random(spec.seed).sample(usable, k))


def _write(path: Path, lines) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)


def to_messages(image_path: str, prompt: str, response: str, *, image_column: bool = False) -> dict:
    """One Axolotl multimodal chat example: the user turn holds the image and the prompt.

    ``image_column``: the image goes in an ``images`` list beside a bare image placeholder, the form in
    which Axolotl applies ``image_size`` (it loads the file and pads it); otherwise the placeholder
    carries the path and the processor loads it as stored.
    """
    image = {"type": "image"} if image_column else {"type": "image", "path": image_path}
    example: dict = {
        "messages": [
            {"role": "user", "content": [image, {"type": "text", "text": prompt}]},
            {"role": "assistant", "content": [{"type": "text", "text": response}]},
        ]
    }
    if image_column:
        example["images"] = [image_path]
    return example


def _log_bad(bad_rows, log) -> None:
    log(f"{len(bad_rows)} unusable rows:")
    for row, ref, why in bad_rows[:MAX_REPORTED]:
        log(f"  row {row}: {ref or '(empty)'} — {why}")
    if len(bad_rows) > MAX_REPORTED:
        log(f"  … and {len(bad_rows) - MAX_REPORTED} more (see data_report.json)")


def _progress(log):
    state = {"last": -1}

    def report(done: int, total: int) -> None:
        if total < 2000:  # small tables verify in seconds: the phase line says it all
            return
        step = max(1, total // 10)
        if done == total or done // step != state["last"]:
            state["last"] = done // step
            log(f"verifying images: {done}/{total}")

    return report
