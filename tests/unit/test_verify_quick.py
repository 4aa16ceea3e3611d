"""The quick check that dataset verification runs first must never pass a file the full check refuses.

``_quick_check`` decodes a JPEG at 1/8 scale and reads each file once; ``_inspect`` (what
``resolve_image`` does) decodes it whole. These tests damage real JPEGs many ways — cut short,
bytes changed, spans dropped, markers inserted; baseline, progressive, greyscale, CMYK, restart
markers; a PNG too — and compare the two verdicts file by file.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mixtrain.errors import InvalidInput
from mixtrain.images import MAX_PIXELS, POOL_MIN, _inspect, _quick_check, resolve_image, verify_images


def source(mode: str, size=(96, 80)) -> Image.Image:
    """Noise in every channel: cuts and flips then land in real scan data, not in flat colour."""
    grey = Image.effect_noise(size, 50).convert("L")
    im = Image.merge("RGB", (grey, grey.rotate(90), grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    return im if mode == "RGB" else im.convert(mode)


KINDS = {
    "baseline": ("RGB", {"quality": 90}),
    "4:4:4": ("RGB", {"quality": 95, "subsampling": 0}),
    "progressive": ("RGB", {"quality": 85, "progressive": True}),
    "optimized": ("RGB", {"quality": 80, "optimize": True}),
    "grey-progressive": ("L", {"quality": 90, "progressive": True}),
    "cmyk": ("CMYK", {"quality": 90}),
    "restart-markers": ("RGB", {"quality": 90, "restart_marker_rows": 1}),
    "png": ("RGB", {"format": "PNG"}),  # not decoded at reduced scale: verify + load, as the full check
}


def jpeg(kind: str, size=(96, 80)) -> bytes:
    mode, options = KINDS[kind]
    buf = io.BytesIO()
    source(mode, size).save(buf, **{"format": "JPEG", **options})
    return buf.getvalue()


def damaged(data: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = [data[:cut] for cut in sorted(rng.sample(range(2, len(data)), 12))] + [data[:-1], data[:-2]]
    while len(out) < n:
        b = bytearray(data)
        how = rng.randrange(3)
        at = rng.randrange(len(b))
        if how == 0:  # change 1-64 bytes
            for j in range(at, min(len(b), at + rng.choice([1, 2, 8, 64]))):
                b[j] = rng.choice([rng.randrange(256), 0xFF, 0x00, b[j] ^ (1 << rng.randrange(8))])
            out.append(bytes(b))
        elif how == 1:  # drop a span
            out.append(data[:at] + data[at + rng.randrange(1, 200) :])
        else:  # insert a marker
            out.append(data[:at] + bytes([0xFF, rng.choice([0xD0, 0xD8, 0xD9, 0xC4, 0xDA, 0xDB, 0xC2])]) + data[at:])
    return out


def full_check_passes(path: Path) -> bool:
    try:
        _inspect(path, str(path), MAX_PIXELS)
    except InvalidInput:
        return False
    return True


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", list(KINDS))
def test_quick_check_passes_no_damaged_file_that_the_full_decode_refuses(tmp_path, kind):
    rng = random.Random(kind)
    verdicts = []
    for i, data in enumerate(damaged(jpeg(kind), rng, 80)):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(data)
        verdicts.append((_quick_check(str(p), MAX_PIXELS, {}) is not None, full_check_passes(p)))
    assert not [i for i, (quick, full) in enumerate(verdicts) if quick and not full]
    refused = sum(not full for _, full in verdicts)
    assert refused >= 20, "the damage must be real for the comparison to mean anything"
    # Measured on ~16k damaged files: the verdicts are identical both ways (the quick check is not stricter).
    assert [quick for quick, _ in verdicts] == [full for _, full in verdicts]


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey-progressive"])
def test_a_jpeg_cut_anywhere_in_its_scans_is_refused_at_reduced_scale(tmp_path, kind):
    """A progressive JPEG's last scans only refine detail that 1/8 scale never shows: still read, still checked."""
    data = jpeg(kind, (256, 256))
    sos = data.find(b"\xff\xda")  # the first scan starts here; every later cut is in scan data
    for frac in (0.1, 0.5, 0.9, 0.99):
        cut = sos + int((len(data) - sos) * frac)
        p = tmp_path / f"cut{frac}.jpg"
        p.write_bytes(data[:cut])
        assert _quick_check(str(p), MAX_PIXELS, {}) is None, (kind, frac)
        assert not full_check_passes(p)
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    assert _quick_check(str(whole), MAX_PIXELS, {}) == str(whole.resolve())


def png_with_bad_idat_crc() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.find(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    crc_at = at + 4 + length
    data[crc_at : crc_at + 4] = struct.pack(">I", zlib.crc32(b"other") & 0xFFFFFFFF)
    return bytes(data)


def test_png_chunk_checksums_are_still_checked(tmp_path):
    """``load`` alone skips PNG CRCs (PIL reads and drops them); ``verify`` does not, so the quick check keeps it."""
    p = tmp_path / "crc.png"
    p.write_bytes(png_with_bad_idat_crc())
    with Image.open(p) as im:
        im.load()  # no complaint: why the quick check still verifies non-JPEG files
    assert _quick_check(str(p), MAX_PIXELS, {}) is None
    with pytest.raises(InvalidInput, match="does not decode"):
        resolve_image(str(p), tmp_path / "cache")


def test_quick_check_returns_the_path_resolve_image_returns(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.jpg").write_bytes(jpeg("baseline"))
    (tmp_path / "via").symlink_to(real, target_is_directory=True)
    (real / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    dirs: dict[str, str] = {}
    for ref in ["real/a.jpg", "via/a.jpg", "via/sub/../a.jpg", "~/via/a.jpg", str(tmp_path / "via" / "a.jpg")]:
        assert _quick_check(ref, MAX_PIXELS, dirs) == str(resolve_image(ref, tmp_path / "cache")), ref
    (real / "link.jpg").symlink_to(real / "a.jpg")
    for ref in ["real/link.jpg", "real/", "real/.", "file://" + str(real / "a.jpg"), " real/a.jpg", "real/none.jpg"]:
        assert _quick_check(ref, MAX_PIXELS, dirs) is None, ref  # the full check handles these
    assert _quick_check("real/a.jpg", 80 * 96 - 1, dirs) is None  # over max_pixels: the full check refuses


@pytest.mark.filterwarnings("ignore")
def test_the_pool_reports_the_same_files_with_the_same_reasons_as_resolve_image(tmp_path):
    """End to end through the process pool: verdicts and messages equal resolve_image's, file by file."""
    rng = random.Random(8)
    folder = tmp_path / "img"
    folder.mkdir()
    refs = []
    samples = [jpeg(k, (48, 40)) for k in KINDS]
    for i in range(POOL_MIN + 40):
        data = samples[i % len(samples)]
        if i % 3 == 0:
            data = rng.choice(damaged(data, rng, 4))
        p = folder / f"{i}.jpg"
        p.write_bytes(data)
        refs.append(str(p))
    (folder / "dir.jpg").mkdir()
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "link.jpg").symlink_to(folder / "1.jpg")
    refs += [str(folder / n) for n in ("dir.jpg", "loop.jpg", "fifo.jpg", "link.jpg", "gone.jpg")]
    good, bad = verify_images(refs, tmp_path / "cache")
    expected_good, expected_bad = {}, []
    for i, ref in enumerate(refs):
        try:
            expected_good[ref] = str(resolve_image(ref, tmp_path / "other-cache"))
        except InvalidInput as err:
            expected_bad.append((i, ref, " ".join(str(err).split())))
    assert len(expected_bad) >= 20 and len(expected_good) >= 100 and len(refs) > POOL_MIN  # the pool ran
    assert bad == expected_bad
    assert good == expected_good
