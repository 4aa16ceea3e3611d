"""Prepared rows adjusted per family: Llama 3.2 Vision's system turn is dropped only where an image is."""

from __future__ import annotations

import json

from mixtrain.vlm import family_rows
from mixtrain.vlm.families import get_family


def _row(system: bool, image: bool) -> dict:
    user = [{"type": "text", "text": "What colour?"}]
    if image:
        user.insert(0, {"type": "image", "path": "/x.png"})
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    if system:
        msgs.insert(0, {"role": "system", "content": [{"type": "text", "text": "Be brief."}]})
    return {"messages": msgs}


def test_mllama_loses_the_system_turn_of_rows_with_an_image_only(tmp_path):
    rows = [_row(True, True), _row(True, False), _row(False, True)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    notes: list[str] = []
    assert family_rows.adapt(get_family("mllama"), [path, None], notes.append) == 1
    out = [json.loads(line) for line in path.read_text().splitlines()]
    assert [m["role"] for m in out[0]["messages"]] == ["user", "assistant"]
    assert out[1] == rows[1] and out[2] == rows[2]
    assert len(notes) == 1 and "dropped the system turn of 1 row(s)" in notes[0]
    assert not list(tmp_path.glob("*.tmp"))


def test_other_families_keep_their_rows_untouched(tmp_path):
    path = tmp_path / "train.jsonl"
    text = json.dumps(_row(True, True)) + "\n"
    path.write_text(text)
    notes: list[str] = []
    assert family_rows.adapt(get_family("qwen3_vl"), [path], notes.append) == 0
    assert path.read_text() == text and not notes
