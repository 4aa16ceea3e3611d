"""Prepared rows adjusted to what a family's chat template accepts, before anything tokenises them.

Llama 3.2 Vision's template raises "Prompting with images is incompatible with system messages" on any
conversation holding both: training would crash in Axolotl's collator on the first such batch (after the
model has loaded). Its system turn is dropped instead, with a note saying how many rows lost it; rows
without an image keep theirs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from mixtrain.vlm.families import Family


def _has_image(row: dict) -> bool:
    if row.get("images"):
        return True
    return any(
        isinstance(part, dict) and part.get("type") == "image"
        for msg in row.get("messages") or []
        if isinstance(msg.get("content"), list)
        for part in msg["content"]
    )


def drop_system_with_image(row: dict) -> bool:
    """Remove the system turns of ``row`` when it has an image; True when something was removed."""
    if not _has_image(row):
        return False
    kept = [m for m in row.get("messages") or [] if m.get("role") != "system"]
    if len(kept) == len(row.get("messages") or []):
        return False
    row["messages"] = kept
    return True


def adapt(family: Family, paths: list[Path | None], log: Callable[[str], None]) -> int:
    """Rewrite each prepared JSONL in ``paths`` (atomically) as ``family`` needs; return rows changed."""
    if not family.no_system_with_image:
        return 0
    changed = 0
    for path in (p for p in paths if p is not None):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        n = sum(drop_system_with_image(r) for r in rows)
        if not n:
            continue
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        os.replace(tmp, path)
        changed += n
    if changed:
        log(
            f"note: {family.description} refuses a system message together with an image — "
            f"dropped the system turn of {changed} row(s) that have an image"
        )
    return changed
