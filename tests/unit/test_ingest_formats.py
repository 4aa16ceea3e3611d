"""dataset create on the shapes VLM datasets really come in, each written by the library that writes it.

Images end up content-addressed in the warehouse (the same image twice stored once), the table holds
references, bad images are reported by row without their bytes, and deleting the sources changes nothing.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mixtrain.datasets.store import DatasetStore
from mixtrain.errors import InvalidInput
from mixtrain.images import cell_refs, load_image
from mixtrain.settings import load_settings


def _jpeg(colour: str, size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "JPEG")
    return buf.getvalue()


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def store(home) -> DatasetStore:
    return DatasetStore(load_settings())


def _rows(store: DatasetStore, name: str) -> list[dict]:
    return store.get(name).scan().to_arrow().to_pylist()


def _pixels(store: DatasetStore, cell) -> list[tuple]:
    refs = cell_refs(cell, warehouse=store.warehouse_dir(), source_dirs=[])
    return [load_image(r, store.settings.image_cache).getpixel((2, 2)) for r in refs]


def _stored(store: DatasetStore) -> list[Path]:
    return sorted(p for p in (store.warehouse_dir() / "images").rglob("*") if p.is_file())


def test_hf_parquet_with_image_struct_and_sequence_answer(store, tmp_path, capsys):
    """`datasets` with an Image() feature and a Sequence answer — the shape of ChartQA/DocVQA on the Hub."""
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answers": datasets.Sequence(datasets.Value("string")),
        }
    )
    red = _jpeg("red")
    ds = datasets.Dataset.from_dict(
        {
            "image": [
                {"bytes": red, "path": "red.jpg"},
                {"bytes": _png("blue"), "path": None},
                {"bytes": red, "path": "again.jpg"},
                {"bytes": b"\xff\xd8 not a jpeg" * 4000, "path": "bad.jpg"},
            ],
            "question": ["colour?", "colour?", "again?", "broken?"],
            "answers": [["red", "reddish"], ["blue"], ["red"], ["?"]],
        },
        features=features,
    )
    ds.to_parquet(str(tmp_path / "train.parquet"))
    store.create("hf", tmp_path / "train.parquet")
    report = store.last_report
    assert report.columns == {"image": "one"} and report.images == 2  # red twice → stored once
    assert [(row, col) for row, col, _, _ in report.bad] == [(3, "image")]
    assert "does not decode" in report.bad[0][3] and len(report.bad[0][3]) < 400  # the reason, never the bytes
    schema = store.get("hf").schema().as_arrow()
    assert "list<element: " in str(schema.field("answers").type)  # a list stays a list, never a string
    rows = _rows(store, "hf")
    assert rows[0]["image"]["format"] == "jpg" and rows[1]["image"]["format"] == "png"
    assert (rows[1]["image"]["width"], rows[1]["image"]["height"]) == (8, 6)
    assert rows[0]["image"]["sha256"] == rows[2]["image"]["sha256"] and rows[0]["image"]["source"] == "red.jpg"
    assert rows[3]["image"]["sha256"] is None
    assert len(_stored(store)) == 2
    assert _pixels(store, rows[0]["image"]) == [(254, 0, 0)] or _pixels(store, rows[0]["image"])[0][0] > 240
    (tmp_path / "train.parquet").unlink()  # the dataset is self-contained
    assert _pixels(store, rows[1]["image"]) == [(0, 0, 255)]


def test_folder_of_parquet_shards_streams_and_keeps_row_numbers(store, tmp_path):
    import datasets

    feats = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    folder = tmp_path / "shards"
    folder.mkdir()
    colours = ["red", "green", "blue", "white"]
    for i in range(2):
        rows = {"image": [{"bytes": _jpeg(c), "path": None} for c in colours[2 * i : 2 * i + 2]], "text": ["a", "b"]}
        datasets.Dataset.from_dict(rows, features=feats).to_parquet(str(folder / f"part-{i}.parquet"))
    store.create("sharded", folder)
    assert store.get("sharded").scan().to_arrow().num_rows == 4 and store.last_report.images == 4


def test_save_to_disk_folder_with_a_list_of_images(store, tmp_path):
    """`Dataset.save_to_disk` (Arrow files + dataset_info.json); a `Sequence(Image())` column: several images a row."""
    import datasets

    feats = datasets.Features({"images": datasets.Sequence(datasets.Image()), "prompt": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"images": [[{"bytes": _jpeg("red"), "path": None}, {"bytes": _png("blue"), "path": None}]], "prompt": ["two"]},
        features=feats,
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    store.create("saved", tmp_path / "saved")
    (row,) = _rows(store, "saved")
    assert [r["format"] for r in row["images"]] == ["jpg", "png"]
    assert _pixels(store, row["images"])[1] == (0, 0, 255)
    dd = datasets.DatasetDict({"train": ds})
    dd.save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(InvalidInput, match="DatasetDict with splits train"):
        store.create("dict", tmp_path / "dict")


def test_imagefolder_with_captions_needs_a_prompt(store, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for c in ("red", "blue"):
        Image.new("RGB", (16, 16), c).save(folder / f"{c}.png")
    with open(folder / "metadata.jsonl", "w") as fh:
        for c in ("red", "blue"):
            fh.write(json.dumps({"file_name": f"{c}.png", "text": f"a {c} square"}) + "\n")
    import datasets

    # the folder is what `datasets` itself loads as an imagefolder
    assert datasets.load_dataset("imagefolder", data_dir=str(folder), split="train").num_rows == 2
    with pytest.raises(InvalidInput, match="--prompt"):
        store.create("folder", folder)
    store.create("folder", folder, prompt="Describe the image.")
    rows = _rows(store, "folder")
    assert {r["text"] for r in rows} == {"a red square", "a blue square"}
    assert all(r["prompt"] == "Describe the image." and r["image"]["sha256"] for r in rows)


def test_webdataset_shards(store, tmp_path):
    """Shards written by `webdataset.TarWriter`: members grouped by key, image + .json/.txt."""
    import webdataset as wds

    (tmp_path / "wds").mkdir()
    for shard in range(2):
        with wds.TarWriter(str(tmp_path / "wds" / f"shard-{shard:04d}.tar")) as sink:
            for i, c in enumerate(("red", "blue")):
                sink.write({"__key__": f"s{shard}_{i}", "jpg": _jpeg(c), "json": {"prompt": "colour?"}, "txt": c})
    store.create("wds", tmp_path / "wds" / "shard-*.tar")
    rows = _rows(store, "wds")
    assert len(rows) == 4 and {r["text"] for r in rows} == {"red", "blue"} and rows[0]["prompt"] == "colour?"
    assert rows[0]["image"]["source"] == "tar:shard-0000.tar#s0_0.jpg" and store.last_report.images == 2


def test_llava_json_array_with_image_root(store, tmp_path):
    """LLaVA-Instruct: a JSON array, `image` relative to an image folder, multi-turn `conversations`."""
    (tmp_path / "coco").mkdir()
    Image.new("RGB", (16, 16), "red").save(tmp_path / "coco" / "0001.jpg")
    rows = [
        {
            "id": "1",
            "image": "0001.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour?"},
                {"from": "gpt", "value": "Red."},
                {"from": "human", "value": "Sure?"},
                {"from": "gpt", "value": "Yes."},
            ],
        }
    ]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    store.create("llava", tmp_path / "llava.json", image_root=tmp_path / "coco")
    (row,) = _rows(store, "llava")
    assert row["image"]["sha256"] and json.loads(row["conversations"]) == rows[0]["conversations"]
    shutil.rmtree(tmp_path / "coco")  # sources gone: the dataset still has its image
    assert _pixels(store, row["image"])[0][0] > 240


def test_openai_vision_jsonl_mixed_content(store, tmp_path):
    """OpenAI's vision fine-tuning JSONL: `content` a string in one message, a part list in another."""
    data_url = "data:image/png;base64," + base64.b64encode(_png("blue")).decode()
    lines = [
        {
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Colour?"},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                },
                {"role": "assistant", "content": "Blue."},
            ]
        }
    ]
    (tmp_path / "openai.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    store.create("openai", tmp_path / "openai.jsonl")
    (row,) = _rows(store, "openai")
    messages = json.loads(row["messages"])
    part = messages[1]["content"][1]
    assert part["type"] == "image" and part["image"]["format"] == "png" and part["image"]["source"] == "data URL"
    assert messages[0] == lines[0]["messages"][0] and messages[2] == lines[0]["messages"][2]
    assert "base64" not in row["messages"]  # the bytes are in the store, not in the row
    assert _pixels(store, part["image"]) == [(0, 0, 255)]


def test_keep_image_refs_resolves_relative_paths_at_create(store, tmp_path, monkeypatch):
    (tmp_path / "d" / "img").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(tmp_path / "d" / "img" / "a.png")
    (tmp_path / "d" / "rows.csv").write_text("image,prompt,response\nimg/a.png,p,r\nimg/missing.png,p,r\n")
    store.create("kept", tmp_path / "d" / "rows.csv", keep_image_refs=True)
    assert [r["image"] for r in _rows(store, "kept")] == [
        str(tmp_path / "d" / "img" / "a.png"),
        str(tmp_path / "d" / "img" / "missing.png"),
    ]
    assert [(row, "not found" in why) for row, _, _, why in store.last_report.bad] == [(1, True)]
    assert not (store.warehouse_dir() / "images").exists() or not _stored(store)
    monkeypatch.chdir(tmp_path)  # an eval run from another folder still finds it
    assert cell_refs(_rows(store, "kept")[0]["image"], warehouse=None, source_dirs=[]) == [
        str(tmp_path / "d" / "img" / "a.png")
    ]


def test_delete_removes_only_images_no_other_dataset_references(store, tmp_path):
    for name, colours in (("one", ["red", "blue"]), ("two", ["red"])):
        (tmp_path / name).mkdir()
        for c in colours:
            Image.new("RGB", (8, 8), c).save(tmp_path / name / f"{c}.png")
        lines = "".join(f"{c}.png,p,r\n" for c in colours)
        (tmp_path / name / "rows.csv").write_text("image,prompt,response\n" + lines)
        store.create(name, tmp_path / name / "rows.csv")
    assert len(_stored(store)) == 2
    red = _rows(store, "two")[0]["image"]
    store.delete("one")
    assert _stored(store) == [Path(cell_refs(red, warehouse=store.warehouse_dir(), source_dirs=[])[0])]
    store.delete("two")
    assert _stored(store) == []


def test_append_from_another_format_and_unreadable_inputs(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text("image,prompt\n" + "".join(f"{i}.png,p\n" for i in range(2)))
    for i in range(2):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
    store.create("mixed", tmp_path / "a.csv")
    pq.write_table(pa.table({"prompt": ["q"], "image": [_jpeg("green")]}), tmp_path / "b.parquet")  # raw bytes
    store.append("mixed", tmp_path / "b.parquet")
    assert len(_rows(store, "mixed")) == 3 and len(_stored(store)) == 3
    (tmp_path / "x.json").write_text('{"data": [1]}')
    with pytest.raises(InvalidInput, match="JSON object, not an array"):
        store.create("bad", tmp_path / "x.json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("hi")
    with pytest.raises(InvalidInput, match="cannot tell what the folder"):
        store.create("bad", tmp_path / "empty")
    with pytest.raises(InvalidInput, match="no files match"):
        store.create("bad", tmp_path / "nothing-*.tar")


def test_doctor_sweeps_images_no_dataset_references(store, tmp_path):
    from mixtrain.images.store import put_bytes

    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    (tmp_path / "rows.csv").write_text("image,prompt\nred.png,p\n")
    store.create("kept", tmp_path / "rows.csv")
    stray = put_bytes(store.warehouse_dir(), _png("white"), "png")  # an interrupted create's image
    found = store.orphan_files(older_than=0)
    assert [p.name for p in found] == [f"{stray}.png"]  # the referenced image is never an orphan


def test_prepare_reads_the_stored_images_after_the_sources_are_gone(store, tmp_path):
    """A snapshot is reproducible: the fine-tune's prepare gives the same rows once the sources are deleted."""
    import datasets

    from mixtrain.vlm.prepare import prepare
    from mixtrain.vlm.spec import FinetuneSpec

    feats = datasets.Features(
        {"image": datasets.Image(), "prompt": datasets.Value("string"), "response": datasets.Value("string")}
    )
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": _jpeg(c), "path": f"{c}.jpg"} for c in ("red", "blue")],
            "prompt": ["c?", "c?"],
            "response": ["red", "blue"],
        },
        features=feats,
    )
    ds.to_parquet(str(tmp_path / "hf.parquet"))
    store.create("hfp", tmp_path / "hf.parquet")
    spec = FinetuneSpec(dataset_name="hfp", output_model_name="m", image_column="image")
    runs = []
    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        out.mkdir()
        result = prepare(store, spec, out, log=lambda _: None)
        assert result.bad_rows == []
        runs.append(result.jsonl.read_text())
        (tmp_path / "hf.parquet").unlink(missing_ok=True)
    assert runs[0] == runs[1] and str(store.warehouse_dir() / "images") in runs[0]


def test_image_columns_detected_by_name_type_and_values():
    import pyarrow as pa

    from mixtrain.images.store import detect_image_columns

    hf = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("image_path", pa.string()),
            ("image_id", pa.string()),  # an id, not an image
            ("pic_of_day", pa.string()),
            ("shot", pa.string()),  # named otherwise, but its values are image files
            ("frames", pa.list_(hf)),
            ("raw", pa.binary()),
            ("answers", pa.list_(pa.string())),
            ("messages", pa.string()),
        ]
    )
    sample = [{"image_path": "a.png", "image_id": "17", "pic_of_day": "x", "shot": "x/y.JPG", "answers": ["a"]}]
    assert detect_image_columns(schema, sample) == {
        "image_path": "one",
        "shot": "one",
        "frames": "list",
        "raw": "one",
        "messages": "messages",
    }


def test_paths_of_another_machine_are_kept_as_written_without_trying_each(store, tmp_path):
    """The spec's own example CSV names /data/... images that do not exist here: create still works, the
    column keeps the paths as written, and it stops looking after the first rows."""
    from mixtrain.images.store import GIVE_UP_AFTER

    rows = GIVE_UP_AFTER * 3
    (tmp_path / "d.csv").write_text(
        "image_path,prompt,response\n" + "".join(f"/data/vlm/{i}.jpg,p,r\n" for i in range(rows))
    )
    store.create("elsewhere", tmp_path / "d.csv")
    assert store.last_report.kept_as_text == ["image_path"] and len(store.last_report.bad) == GIVE_UP_AFTER
    got = _rows(store, "elsewhere")
    assert [r["image_path"] for r in got] == [f"/data/vlm/{i}.jpg" for i in range(rows)]
