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
from mixtrain.vlm import rows as rows_mod
from mixtrain.vlm.files import FinetuneFolder
from mixtrain.vlm.rows import CONVERSATION_COLUMNS, BadRow, Turn
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


@dataclass
class Columns:
    """Which columns a row is read from: a conversation column, or prompt + response (+ images either way)."""

    messages: str | None
    image: str | None
    prompt: str | None = None
    response: str | None = None

    def names(self) -> list[str]:
        return list(dict.fromkeys(c for c in (self.messages, self.image, self.prompt, self.response) if c))


def choose_columns(spec: FinetuneSpec, available: list[str], log=print) -> Columns:
    """The spec's mapping against the table's columns (a conversation column is used when asked for, or
    when the table has one and no prompt/response columns — said in the log)."""
    defaults = FinetuneSpec.model_fields
    messages = spec.messages_column
    plain_default = all(
        getattr(spec, f) == defaults[f].default for f in ("prompt_column", "response_column")
    ) and not any(c in available for c in (spec.prompt_column, spec.response_column))
    if not messages and plain_default:
        messages = next((c for c in CONVERSATION_COLUMNS if c in available), "")
        if messages:
            log(
                phase_line(
                    f"columns: training on the conversations in column {messages!r} "
                    f"(the table has no {spec.prompt_column!r}/{spec.response_column!r} columns; --messages_column chooses)"
                )
            )
    if messages:
        if messages not in available:
            raise InvalidInput(
                f"dataset {spec.dataset_name!r} has no column {messages} (--messages_column)",
                f"its columns are: {', '.join(available)}",
            )
        image = spec.image_column if spec.image_column in available else None
        if image is None and spec.image_column != defaults["image_column"].default:
            raise InvalidInput(
                f"dataset {spec.dataset_name!r} has no column {spec.image_column} (--image_column)",
                f"its columns are: {', '.join(available)}",
            )
        if image is None:  # LLaVA-Instruct and HF datasets name it "image" / "images"
            image = next((c for c in ("image", "images") if c in available), None)
            if image:
                log(
                    phase_line(
                        f"columns: the <image> placeholders take the images of column {image!r} (--image_column chooses)"
                    )
                )
        return Columns(messages, image)
    wanted = {
        "image_column": spec.image_column,
        "prompt_column": spec.prompt_column,
        "response_column": spec.response_column,
    }
    missing = [f"{col} (--{param})" for param, col in wanted.items() if col not in available]
    if missing:
        raise InvalidInput(
            f"dataset {spec.dataset_name!r} has no column {', '.join(missing)}",
            f"its columns are: {', '.join(available)} — map them with --image_column/--prompt_column/--response_column"
            " (or --messages_column for a conversation column)",
        )
    return Columns(None, spec.image_column, spec.prompt_column, spec.response_column)


def load_rows(
    datasets, spec: FinetuneSpec, snapshot_id: int | None = None, log=print
) -> tuple[list[dict], int | None, list[str], Columns]:
    """Read the mapped columns at the dataset's current snapshot, or at ``snapshot_id`` (a resumed run)."""
    table = datasets.get(spec.dataset_name)
    snapshot = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    if snapshot_id is not None and snapshot is None:
        raise InvalidInput(
            f"dataset {spec.dataset_name!r} no longer has snapshot {snapshot_id}, which the interrupted run trained on",
            "start a new run with `mixtrain workflow run` on the dataset as it is now",
        )
    available = [f.name for f in table.schema().fields]
    columns = choose_columns(spec, available, log)
    if snapshot is None:
        raise InvalidInput(f"dataset {spec.dataset_name!r} has no data", "append rows to it first")
    data = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=tuple(columns.names())).to_arrow().to_pylist()
    return data, snapshot.snapshot_id, datasets.source_dirs(spec.dataset_name), columns


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _response(value, column: str, row: int, pick: str) -> str:
    """A response cell as text; a list of answers is never stringified (refused unless --response_pick first)."""
    if isinstance(value, (list, tuple)):
        if pick != "first":
            raise InvalidInput(
                f"column {column!r} holds a list of answers (row {row}: {_shown_list(value)}), not one response",
                "pass --response_pick first to train on each row's first answer, or map a text column with --response_column",
            )
        return next((_text(v) for v in value if _text(v)), "")
    return _text(value)


def _shown_list(value) -> str:
    text = json.dumps(list(value)[:3], ensure_ascii=False, default=str)
    return text[:120] + ("…" if len(text) > 120 or len(value) > 3 else "")


def row_turns(row: dict, i: int, columns: Columns, spec: FinetuneSpec, refs_of) -> list[Turn]:
    """One table row as training turns with its image references (raises BadRow)."""
    images = refs_of(row[columns.image]) if columns.image else []
    if columns.messages:
        turns = rows_mod.parse_conversation(row[columns.messages])
        return rows_mod.fill_slots(rows_mod.resolve_images(turns, refs_of), images)
    assert columns.prompt and columns.response and columns.image
    if not images:
        raise BadRow(f"empty {columns.image}")
    prompt = _text(row[columns.prompt])
    if not prompt:
        raise BadRow(f"empty {columns.prompt}")
    response = _response(row[columns.response], columns.response, i, spec.response_pick)
    if not response:
        raise BadRow(f"empty {columns.response}")
    return rows_mod.plain_turns(prompt, response, images)


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
    rows, snapshot_id, source_dirs, columns = load_rows(datasets, spec, snapshot_id, log)
    log(
        phase_line(
            f"read dataset {spec.dataset_name}: {len(rows)} rows at snapshot {snapshot_id}", time.monotonic() - t0
        )
    )
    t0 = time.monotonic()
    refs_of = _refs_of(datasets, source_dirs)
    bad: dict[int, str] = {}
    turns: list[list[Turn]] = []
    refs: list[list[str]] = []
    for i, row in enumerate(rows):
        try:
            t = row_turns(row, i, columns, spec, refs_of)
        except BadRow as exc:
            bad[i] = str(exc)
            t = []
        turns.append(t)
        refs.append(rows_mod.image_refs(t))
    _check_image_size(spec, refs, bad)
    good, failures = verify_images(
        list(dict.fromkeys(r for i, rs in enumerate(refs) if i not in bad for r in rs)),
        datasets.settings.image_cache,
        workers=min(16, (os.cpu_count() or 2) * 4),
        progress=_progress(log),
    )
    reasons = {ref: why for _, ref, why in failures}
    for i, rs in enumerate(refs):
        why = next((reasons[r] for r in rs if r in reasons), None) if i not in bad else None
        if why:
            bad[i] = why
    bad_rows = sorted((i, _shown_ref(rows[i], columns, refs[i]), why) for i, why in bad.items())
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
        FinetuneFolder(out_dir).data_report.write_text(json.dumps(result.report(), indent=2))
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
        return json.dumps(rows_mod.to_example(turns[i], good, image_column=bool(spec.image_size))) + "\n"

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
    turns = rows_mod.plain_turns(prompt, response, [image_path])
    return rows_mod.to_example(turns, {image_path: image_path}, image_column=image_column)


def _refs_of(datasets, source_dirs: list[str]):
    """Any image cell → references (``mixtrain.images.cell_refs``: strings, stored references, lists)."""
    warehouse = datasets.image_warehouse()

    def refs_of(cell) -> list[str]:
        try:
            return cell_refs(cell, warehouse=warehouse, source_dirs=source_dirs)
        except InvalidInput as exc:
            raise BadRow(exc.what) from None

    return refs_of


def _check_image_size(spec: FinetuneSpec, refs: list[list[str]], bad: dict[int, str]) -> None:
    """Axolotl applies image_size to a row's first image only: refuse --image_size on several images per row."""
    if not spec.image_size:
        return
    many = next((i for i, rs in enumerate(refs) if len(rs) > 1 and i not in bad), None)
    if many is not None:
        raise InvalidInput(
            f"--image_size resizes one image per row, but row {many} has {len(refs[many])} images "
            "(Axolotl pads only a row's first image)",
            "leave --image_size unset for multi-image rows",
        )


def _shown_ref(row: dict, columns: Columns, refs: list[str]) -> str:
    """What the bad-row report names for a row: its first image, else a short form of its image cell."""
    if refs:
        return refs[0] if len(refs) == 1 else f"{refs[0]} (+{len(refs) - 1} more)"
    cell = row.get(columns.image) if columns.image else None
    if isinstance(cell, str):
        return cell.strip()
    return ""


def _log_bad(bad_rows, log) -> None:
    log(f"{len(bad_rows)} unusable rows:")
    for row, ref, why in bad_rows[:MAX_REPORTED]:
        log(f"  row {row}: {ref or '(empty)'} — {why}")
    if len(bad_rows) > MAX_REPORTED:
        log(f"  … and {len(bad_rows) - MAX_REPORTED} more (see {FinetuneFolder.DATA_REPORT})")


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
