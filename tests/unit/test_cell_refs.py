"""cell_refs: the one rule that turns any dataset image cell into references resolve_image accepts."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from mixtrain.errors import InvalidInput
from mixtrain.images import cell_refs, resolve_image, stored_path, table_image_ref


def _ref(sha: str | None, fmt: str | None = "jpg", source: str = "x.jpg") -> dict:
    return {"sha256": sha, "format": fmt, "width": 4, "height": 4, "source": source}


def test_each_cell_shape(tmp_path):
    (tmp_path / "a.png").touch()
    dirs = [str(tmp_path)]
    wh = tmp_path / "wh"
    sha = "ab" + "0" * 62
    assert cell_refs(None, warehouse=wh, source_dirs=dirs) == []
    assert cell_refs("  ", warehouse=wh, source_dirs=dirs) == []
    assert cell_refs([], warehouse=wh, source_dirs=dirs) == []
    # a string: exactly what table_image_ref says (relative paths next to the source file)
    assert (
        cell_refs("a.png", warehouse=wh, source_dirs=dirs)
        == [table_image_ref("a.png", dirs)]
        == [str(tmp_path / "a.png")]
    )
    assert cell_refs("https://h/x.png", warehouse=wh, source_dirs=dirs) == ["https://h/x.png"]
    # a stored reference: the content-addressed file under the warehouse
    assert cell_refs(_ref(sha), warehouse=wh, source_dirs=dirs) == [str(wh / "images" / "ab" / f"{sha}.jpg")]
    assert stored_path(wh, sha, "jpg") == wh / "images" / "ab" / f"{sha}.jpg"
    # an image that did not decode at create keeps its source, so the row check names the reason
    assert cell_refs(_ref(None, None, str(tmp_path / "bad.jpg")), warehouse=wh, source_dirs=dirs) == [
        str(tmp_path / "bad.jpg")
    ]
    # an HF Image struct read as-is: its path
    assert cell_refs({"bytes": None, "path": "a.png"}, warehouse=wh, source_dirs=dirs) == [str(tmp_path / "a.png")]
    # a list: the concatenation, in order
    assert cell_refs([_ref(sha), None, "a.png", [_ref(sha, "png")]], warehouse=wh, source_dirs=dirs) == [
        str(wh / "images" / "ab" / f"{sha}.jpg"),
        str(tmp_path / "a.png"),
        str(wh / "images" / "ab" / f"{sha}.png"),
    ]


def test_stored_ref_without_a_warehouse_is_a_clear_error():
    with pytest.raises(InvalidInput, match="warehouse"):
        cell_refs(_ref("cd" * 32), warehouse=None, source_dirs=[])


def test_symlink_loop_is_a_bad_row_never_a_traceback(tmp_path, monkeypatch):
    """#20 §2: a relative path that is a symlink loop used to raise from Path.resolve() in prepare."""
    os.symlink("loop_b", tmp_path / "loop_a")
    os.symlink("loop_a", tmp_path / "loop_b")
    monkeypatch.chdir(tmp_path)
    refs = cell_refs("loop_a", warehouse=None, source_dirs=[])
    assert refs == [str(tmp_path / "loop_a")]
    with pytest.raises(InvalidInput, match="symlink loop"):
        resolve_image(refs[0], tmp_path / "cache")


def test_stored_file_resolves(tmp_path):
    wh = tmp_path / "wh"
    path = stored_path(wh, "ef" * 32, "png")
    path.parent.mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(path)
    (ref,) = cell_refs(_ref("ef" * 32, "png"), warehouse=wh, source_dirs=[])
    assert resolve_image(ref, tmp_path / "cache") == path
