"""Image verification at dataset scale: a process pool for many local files, and a cache of verified files."""

from __future__ import annotations

import os
from pathlib import Path

from mixtrain.images import POOL_MIN, VERIFIED_FILE, verify_images


def images(folder, n: int):
    from PIL import Image

    folder.mkdir()
    out = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.new("RGB", (8, 8), (i % 256, 0, 0)).save(p)
        out.append(str(p))
    return out


def test_many_files_go_through_the_pool_and_bad_rows_keep_their_index(tmp_path):
    refs = images(tmp_path / "img", POOL_MIN + 10)
    (tmp_path / "img" / "7.png").write_bytes(b"not an image")
    refs.append(refs[3])  # a repeated ref is resolved once, reported per row
    good, bad = verify_images(refs, tmp_path / "cache")
    assert [(i, why.split(" (")[0]) for i, _, why in bad] == [
        (7, "image '" + refs[7] + "' does not decode as an image")
    ]
    assert len(good) == POOL_MIN + 9


def test_a_verified_unchanged_file_is_not_decoded_again_and_a_changed_one_is(tmp_path):
    refs = images(tmp_path / "img", 3)
    cache = tmp_path / "cache"
    assert verify_images(refs, cache)[1] == []
    assert (cache / VERIFIED_FILE).is_file()
    # Same size and mtime, different bytes: the cache vouches for it (proof that it did not decode).
    st = os.stat(refs[0])
    data = bytearray(Path(refs[0]).read_bytes())
    data[-20:] = b"\0" * 20
    Path(refs[0]).write_bytes(bytes(data))
    os.utime(refs[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert verify_images(refs, cache)[1] == []
    # A file written again (new mtime) is decoded again, and its damage is found.
    Path(refs[1]).write_bytes(b"garbage")
    good, bad = verify_images(refs, cache)
    assert [i for i, _, _ in bad] == [1] and len(good) == 2


def test_custom_limits_bypass_the_cache(tmp_path):
    refs = images(tmp_path / "img", 2)
    verify_images(refs, tmp_path / "cache")
    _, bad = verify_images(refs, tmp_path / "cache", max_pixels=10)  # 8x8 = 64 pixels > 10
    assert [i for i, _, _ in bad] == [0, 1]


def test_keys_taken_by_the_pool_workers_serve_the_next_run(tmp_path):
    """A first run stats nothing up front: the workers' keys must land in the cache all the same."""
    import json

    refs = images(tmp_path / "img", POOL_MIN + 5)
    cache = tmp_path / "cache"
    assert verify_images(refs, cache)[1] == []
    entries = json.loads((cache / VERIFIED_FILE).read_text())
    assert sorted(entries.values()) == sorted(str(Path(r).resolve()) for r in refs)
    st = os.stat(refs[9])
    Path(refs[9]).write_bytes(b"\0" * st.st_size)  # damaged, same size and mtime: only the cache can pass it
    os.utime(refs[9], ns=(st.st_atime_ns, st.st_mtime_ns))
    good, bad = verify_images(refs, cache)
    assert bad == [] and good[refs[9]] == str(Path(refs[9]).resolve())
