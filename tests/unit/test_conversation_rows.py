"""Rows with conversations and several images → training turns (vlm/rows.py), and prepare() on a real store."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mixtrain.datasets.store import DatasetStore
from mixtrain.errors import InvalidInput
from mixtrain.settings import load_settings
from mixtrain.vlm import rows
from mixtrain.vlm.prepare import prepare
from mixtrain.vlm.rows import BadRow
from mixtrain.vlm.spec import FinetuneSpec


def parts(turns):
    return [(t.role, t.parts) for t in turns]


def test_llava_conversation_places_images_at_their_placeholders_and_keeps_every_turn():
    cell = json.dumps(
        [
            {"from": "human", "value": "<image>\nWhat colour is this?"},
            {"from": "gpt", "value": "Red."},
            {"from": "human", "value": "And this one: <image> ?"},
            {"from": "gpt", "value": "Blue."},
        ]
    )
    turns = rows.fill_slots(rows.parse_conversation(cell), ["/a.png", "/b.png"])
    assert parts(turns) == [
        ("user", [("image", "/a.png"), ("text", "What colour is this?")]),
        ("assistant", [("text", "Red.")]),
        ("user", [("text", "And this one:"), ("image", "/b.png"), ("text", "?")]),
        ("assistant", [("text", "Blue.")]),
    ]
    example = rows.to_example(turns, {"/a.png": "/A.png", "/b.png": "/B.png"})
    assert example["messages"][2]["content"][1] == {"type": "image", "path": "/B.png"}


def test_openai_messages_with_parts_system_and_string_content():
    cell = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "/x.png"}},
                {"type": "image", "image": "/y.png"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Same."}]},
    ]
    turns = rows.parse_conversation(json.dumps(cell))
    assert parts(turns) == [
        ("system", [("text", "Be brief.")]),
        ("user", [("text", "Compare"), ("image", "/x.png"), ("image", "/y.png")]),
        ("assistant", [("text", "Same.")]),
    ]
    assert rows.image_refs(turns) == ["/x.png", "/y.png"]


def test_stored_reference_parts_are_resolved_through_cell_refs():
    ref = {"sha256": "ab" * 32, "format": "png", "width": 4, "height": 4, "source": "bytes"}
    turns = rows.parse_conversation(
        [{"role": "user", "content": [{"type": "image", "image": ref}]}, {"role": "assistant", "content": "ok"}]
    )
    seen = []
    rows.resolve_images(turns, lambda cell: seen.append(cell) or ["/warehouse/ab.png"])
    assert seen == [ref] and rows.image_refs(turns) == ["/warehouse/ab.png"]


@pytest.mark.parametrize(
    "cell, images, reason",
    [
        (
            [{"from": "human", "value": "<image> <image> hi"}, {"from": "gpt", "value": "x"}],
            ["/a"],
            "2 <image> placeholder(s) but 1 image",
        ),
        (
            [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}],
            [],
            "1 <image> placeholder(s) but 0 image",
        ),
        ([{"from": "human", "value": "hi"}], [], "no assistant turn"),
        ([{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}], [], "role 'tool'"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}], [], "turn 1 (assistant) is empty"),
        ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image> here"}], ["/a"], "only user turns"),
        ("not json", [], "not a JSON conversation"),
        ("[]", [], "empty"),
    ],
)
def test_bad_conversations_are_named_bad_rows(cell, images, reason):
    with pytest.raises(BadRow) as err:
        rows.fill_slots(rows.parse_conversation(json.dumps(cell) if not isinstance(cell, str) else cell), images)
    assert reason in str(err.value)


def test_plain_prompt_with_a_literal_image_placeholder_is_the_image_position():
    turns = rows.plain_turns("<image>\nWhat is it?", "a cat", ["/c.png"])
    assert parts(turns)[0] == ("user", [("image", "/c.png"), ("text", "What is it?")])
    two = rows.plain_turns("Left <image> right <image>", "same", ["/l.png", "/r.png"])
    assert parts(two)[0][1] == [("text", "Left"), ("image", "/l.png"), ("text", "right"), ("image", "/r.png")]
    none = rows.plain_turns("Which?", "left", ["/l.png", "/r.png"])  # no placeholder: the images open the turn
    assert parts(none)[0][1] == [("image", "/l.png"), ("image", "/r.png"), ("text", "Which?")]
    with pytest.raises(BadRow, match="2 <image> placeholder"):
        rows.plain_turns("<image> vs <image>", "x", ["/l.png"])


# -- prepare() on a real dataset store ------------------------------------------------------------------


def _images(folder, *colours):
    folder.mkdir(exist_ok=True)
    out = []
    for c in colours:
        Image.new("RGB", (8, 8), c).save(folder / f"{c}.png")
        out.append(str(folder / f"{c}.png"))
    return out


def _stored(path: str) -> str:
    """Where `dataset create` keeps an image: content-addressed in the warehouse (the data contract)."""
    import hashlib
    from pathlib import Path

    from mixtrain.images import stored_path

    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return str(stored_path(DatasetStore(load_settings()).warehouse_dir(), sha, "png"))


def _table(tmp_path, name, table: pa.Table):
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    store = DatasetStore(load_settings())
    store.create(name, path)
    return store


def test_prepare_list_images_and_list_responses(home, tmp_path):
    red, blue = _images(tmp_path / "img", "red", "blue")
    store = _table(
        tmp_path,
        "pairs",
        pa.table(
            {
                "image_path": [[red, blue], [blue]],
                "prompt": ["<image> then <image>: colours?", "colour?"],
                "response": [["red, blue", "red and blue"], ["blue"]],
            }
        ),
    )
    out = tmp_path / "out"
    out.mkdir()
    spec = FinetuneSpec(dataset_name="pairs", output_model_name="m")
    with pytest.raises(InvalidInput) as err:
        prepare(store, spec, out, log=lambda m: None)
    assert "'response' holds a list of answers (row 0" in str(err.value) and "--response_pick first" in err.value.fix
    assert not (out / "train.jsonl").exists()
    result = prepare(store, spec.model_copy(update={"response_pick": "first"}), out, log=lambda m: None)
    lines = [json.loads(x) for x in result.jsonl.read_text().splitlines()]
    assert lines[0]["messages"][0]["content"] == [
        {"type": "image", "path": _stored(red)},
        {"type": "text", "text": "then"},
        {"type": "image", "path": _stored(blue)},
        {"type": "text", "text": ": colours?"},
    ]
    assert lines[0]["messages"][1]["content"] == [{"type": "text", "text": "red, blue"}]
    with pytest.raises(InvalidInput, match="--image_size resizes one image per row, but row 0 has 2"):
        prepare(store, spec.model_copy(update={"response_pick": "first", "image_size": 64}), out, log=lambda m: None)


def test_prepare_finds_a_conversations_column_says_so_and_names_mismatched_rows(home, tmp_path):
    red, blue = _images(tmp_path / "img", "red", "blue")
    conv = [
        [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "red"}],
        [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "blue"}],
        [{"from": "human", "value": "<image> and <image>?"}, {"from": "gpt", "value": "both"}],
    ]
    store = _table(
        tmp_path,
        "llava",
        pa.table({"image": [red, blue, red], "conversations": [json.dumps(c) for c in conv]}),
    )
    out = tmp_path / "out"
    out.mkdir()
    logged: list[str] = []
    spec = FinetuneSpec(dataset_name="llava", output_model_name="m", on_bad_image="skip")
    result = prepare(store, spec, out, log=logged.append)
    assert any("training on the conversations in column 'conversations'" in line for line in logged), logged
    assert any("take the images of column 'image'" in line for line in logged), logged
    assert [(r, why) for r, _, why in result.bad_rows] == [
        (2, "2 <image> placeholder(s) but 1 image(s) in the image column")
    ]
    lines = [json.loads(x) for x in result.jsonl.read_text().splitlines()]
    assert [m["messages"][0]["content"][0]["path"] for m in lines] == [_stored(red), _stored(blue)]
    with pytest.raises(InvalidInput, match=r"1 of 3 rows are unusable \(first: row 2: 2 <image>"):
        prepare(store, spec.model_copy(update={"on_bad_image": "fail"}), out, log=lambda m: None)


def test_prepare_openai_messages_keep_every_turn_and_embedded_images(home, tmp_path):
    red, blue = _images(tmp_path / "img", "red", "blue")
    msgs = [
        {"role": "system", "content": "Answer with one word."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": red}},
                {"type": "text", "text": "and"},
                {"type": "image", "image": blue},
                {"type": "text", "text": "colours?"},
            ],
        },
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "The second?"},
        {"role": "assistant", "content": [{"type": "text", "text": "blue"}]},
    ]
    store = _table(tmp_path, "chat", pa.table({"messages": [json.dumps(msgs)]}))
    out = tmp_path / "out"
    out.mkdir()
    spec = FinetuneSpec(dataset_name="chat", output_model_name="m", messages_column="messages")
    result = prepare(store, spec, out, log=lambda m: None)
    (line,) = [json.loads(x) for x in result.jsonl.read_text().splitlines()]
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert line["messages"][1]["content"] == [  # images inside messages are stored too, then resolved to files
        {"type": "image", "path": _stored(red)},
        {"type": "text", "text": "and"},
        {"type": "image", "path": _stored(blue)},
        {"type": "text", "text": "colours?"},
    ]
    assert line["messages"][4]["content"] == [{"type": "text", "text": "blue"}]
