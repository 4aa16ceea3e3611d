"""prepare() on a real dataset store: relative image refs, verified paths in the JSONL, bad rows by number."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

from mixtrain.datasets.store import DatasetStore
from mixtrain.images import table_image_ref as _image_ref
from mixtrain.settings import load_settings
from mixtrain.vlm.prepare import prepare, to_messages
from mixtrain.vlm.spec import FinetuneSpec


def test_relative_refs_resolve_as_path_would(tmp_path, monkeypatch):
    """The per-row lookup uses os.path for speed; it must name the same file Path arithmetic names."""
    (tmp_path / "data" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", ".hidden.png"):
        (tmp_path / "data" / name).touch()
    monkeypatch.chdir(tmp_path)
    folders = [tmp_path / "elsewhere", tmp_path / "data"]
    for ref in ["a.png", "./a.png", "sub//b.png", "sub/./b.png", ".hidden.png", "sub/../a.png", "nope.png", "sub/"]:
        expected = next(
            (str(f / ref) for f in folders if (f / ref).exists()),
            str(Path(ref).resolve()),
        )
        assert _image_ref(ref, [str(f) for f in folders]) == expected, ref
    assert _image_ref(" /abs/x.png ", []) == "/abs/x.png" and _image_ref(None, []) == ""


def test_prepare_writes_verified_real_paths_and_reports_bad_rows(home, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (16, 16), "red").save(data / "red.jpg")
    (data / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    rows = [
        ("red.jpg", "colour?", "red"),
        ("bad.jpg", "colour?", "red"),
        (str(tmp_path / "link" / "red.jpg"), "colour?", "still red"),
        ("red.jpg", "", "red"),
    ]
    table = data / "rows.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "prompt", "response"])
        w.writerows(rows)
    store = DatasetStore(load_settings())
    store.create("shapes", table)
    spec = FinetuneSpec(dataset_name="shapes", output_model_name="m", on_bad_image="skip")
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(2):  # the second run answers from the cache of verified files
        logged: list[str] = []
        result = prepare(store, spec, out, log=logged.append)
        assert [(r, why.split(" (")[0]) for r, _, why in result.bad_rows] == [
            (1, f"image '{data / 'bad.jpg'}' does not decode as an image"),
            (3, "empty prompt"),
        ]
        # the image was stored with the dataset at create (#18): training reads the stored copy
        real = str(next((store.warehouse_dir() / "images").rglob("*.jpg")))
        assert Path(real).read_bytes() == (data / "red.jpg").read_bytes()
        lines = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
        assert lines == [to_messages(real, "colour?", "red"), to_messages(real, "colour?", "still red")]
        assert json.loads((out / "train_rows.json").read_text()) == [0, 2]
