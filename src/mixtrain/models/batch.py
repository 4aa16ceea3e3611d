"""Batch inference over a JSONL file of inputs: every usable row answered, each bad row reported.

What `mixtrain model run NAME --inputs-file rows.jsonl` does, as an SDK call
(``MixClient.run_model_file``): the rows are read and checked first (a bad image fails before the
model loads), the model is loaded once, and rows are answered ``BATCH`` at a time, each result
handed to ``write`` in file order. A batch that fails is retried row by row so one bad row fails
alone. Greedy answers in a batch equal one-at-a-time ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixtrain.errors import InvalidInput, MixtrainError

BATCH = 8  # rows per generate call


def read_rows(inputs_file: Path) -> list[tuple[int, Any, str | None]]:
    """(line number, row, problem) for each non-blank line; a bad line is a problem, not a crash."""
    if not inputs_file.is_file():
        raise InvalidInput(f"inputs file not found: {inputs_file}", "pass a JSONL file")
    try:
        text = inputs_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {inputs_file}: {exc}", "pass a UTF-8 JSONL file") from None
    out: list[tuple[int, Any, str | None]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append((n, line[:200], f"invalid JSON ({exc.msg}) — one JSON object per line"))
                continue
            out.append(
                (
                    n,
                    row,
                    None if isinstance(row, dict) else 'not a JSON object — one {"image", "prompt"} object per line',
                )
            )
    if not out:
        raise InvalidInput(f"{inputs_file} has no rows", "one JSON object per line")
    return out


def check_rows(rows: list[tuple[int, Any, str | None]], image_cache: Path) -> list[dict]:
    """Records in file order: ``{"line", "input"}`` plus ``"error"`` for a row that cannot be answered."""
    from mixtrain.images import resolve_image
    from mixtrain.models.inference import check_inputs

    records: list[dict] = []
    for n, row, problem in rows:
        if problem is None:
            try:
                for ref in check_inputs(row)[0]:
                    resolve_image(ref, image_cache)  # a bad image fails before the model loads
            except MixtrainError as exc:
                problem = str(exc)
        records.append({"line": n, "input": row, **({"error": problem} if problem else {})})
    return records


def answer(model, recs: list[dict], gen: dict) -> None:
    """Answer ``recs`` in one batch; if the batch fails, row by row so one bad row fails alone."""
    if not recs:
        return
    try:
        for rec, res in zip(
            recs, model.run_batch([r["input"] for r in recs], batch_size=len(recs), **gen), strict=True
        ):
            rec.update(res)
        return
    except MixtrainError:
        pass
    for rec in recs:
        try:
            rec.update(model.run(rec["input"], **gen))
        except MixtrainError as exc:
            rec["error"] = str(exc)


def run_records(load: Callable[[], Any], records: list[dict], gen: dict, write: Callable[[dict], None]) -> None:
    """Answer the good records (loading the model with ``load`` only if there is one), writing all in order."""
    model = load() if any("error" not in r for r in records) else None
    for start in range(0, len(records), BATCH):  # one batched generate per BATCH rows, written in file order
        chunk = records[start : start + BATCH]
        answer(model, [r for r in chunk if "error" not in r], gen)
        for rec in chunk:
            write(rec)


def raise_if_failed(records: list[dict], inputs_file: Path) -> None:
    """After writing: one error naming the failed rows (exit 1, so a script notices)."""
    bad = [(k, r) for k, r in enumerate(records, 1) if "error" in r]
    if not bad:
        return
    k, first = bad[0]
    where = f"row {k} of {inputs_file}, line {first['line']}: {first['error']}"
    answered = len(records) - len(bad)
    summary = (
        where
        if len(bad) == 1
        else f"{len(bad)} of {len(records)} rows failed (lines {', '.join(str(r['line']) for _, r in bad[:10])}); first: {where}"
    )
    raise InvalidInput(
        summary + (f" — the other {answered} row(s) were answered" if answered else ""),
        'see the "error" record of each failed line in the output',
    )
