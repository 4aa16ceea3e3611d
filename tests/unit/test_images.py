"""images.py against real files and a real loopback HTTP server (no outside network)."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from mixtrain.errors import InvalidInput
from mixtrain.images import load_image, resolve_image, verify_images


def image_bytes(fmt: str = "PNG", size=(8, 6), color=(200, 30, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions but holds almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def noisy_jpeg() -> bytes:
    """Big enough that cutting it loses scan data, not headers: only a full decode notices."""
    buf = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


PNG = image_bytes("PNG")
CUT_JPEG = noisy_jpeg()[:-2000]
PNG2 = image_bytes("PNG", color=(1, 2, 3))
JPEG = image_bytes("JPEG", size=(64, 64))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def http_server():
    """Loopback server; ``hits`` counts requests per path so tests can prove the cache works."""
    hits: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def send(self, code: int, body: bytes, ctype: str, length: bool = True):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            hits[path] += 1
            if path == "/img.png":
                self.send(200, PNG, "image/png")
            elif path == "/same.bin":  # same bytes, unhelpful content-type: decoding decides
                self.send(200, PNG, "application/octet-stream")
            elif path == "/other.png":
                self.send(200, PNG2, "image/png")
            elif path == "/photo":
                self.send(200, JPEG, "image/jpeg")
            elif path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/img.png")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/page.html":
                self.send(200, b"<html><body>Sign in</body></html>", "text/html")
            elif path == "/big":  # no Content-Length: the cap must hold while streaming
                self.close_connection = True
                self.send(200, PNG + os.urandom(200_000), "image/png", length=False)
            elif path == "/big-declared":
                self.send(200, os.urandom(200_000), "image/png")
            elif path == "/truncated.jpg":
                self.send(200, CUT_JPEG, "image/jpeg")
            elif path == "/slow":
                time.sleep(1.0)
                self.send(200, PNG, "image/png")
            else:
                self.send(404, b"not found", "text/plain")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(http_server):
    http_server[1].clear()
    return http_server


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- local files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,data", [("a.png", PNG), ("b.jpg", JPEG)])
def test_local_image_returns_absolute_path(tmp_path, cache, name, data):
    p = write(tmp_path / name, data)
    assert resolve_image(str(p), cache) == p.resolve()
    assert not cache.exists()  # local files are never copied


def test_relative_home_and_file_uri(tmp_path, cache, monkeypatch):
    p = write(tmp_path / "my pic.png", PNG)
    monkeypatch.chdir(tmp_path)
    assert resolve_image("my pic.png", cache) == p.resolve()
    assert resolve_image("./my pic.png", cache) == p.resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_image("~/my pic.png", cache) == p.resolve()
    assert resolve_image(p.as_uri(), cache) == p.resolve()  # file:///…/my%20pic.png
    odd = write(tmp_path / "shot:1.png", PNG)  # looks like a scheme, but the file exists
    assert resolve_image("shot:1.png", cache) == odd.resolve()


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda d: d / "nope.png", "not found"),
        (lambda d: d, "not a file"),
        (lambda d: write(d / "notes.png", b"just some text\n"), "does not decode"),
        (lambda d: write(d / "empty.png", b""), "does not decode"),
        (lambda d: write(d / "cut.jpg", CUT_JPEG), "does not decode"),
        (lambda d: write(d / "cut.png", PNG[:-20]), "does not decode"),
        (lambda d: write(d / "bomb.png", png_header_only(100_000, 100_000)), "decompression bomb"),
        pytest.param(
            lambda d: write(d / "big.png", png_header_only(10_000, 10_000)),
            "100,000,000 pixels",  # PIL only warns here; our own limit refuses it
            marks=pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
        ),
    ],
    ids=["missing", "directory", "text", "empty", "truncated-jpeg", "truncated-png", "bomb", "over-limit"],
)
def test_local_bad_images(tmp_path, cache, make, expect):
    p = make(tmp_path)
    with pytest.raises(InvalidInput) as exc:
        resolve_image(str(p), cache)
    assert expect in exc.value.what
    assert str(p) in exc.value.what
    assert exc.value.fix


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_raised_as_error_is_still_a_clear_refusal(tmp_path, cache):
    p = write(tmp_path / "big.png", png_header_only(10_000, 10_000))
    with pytest.raises(InvalidInput, match="decompression bomb"):
        resolve_image(str(p), cache)


def test_max_pixels_is_configurable(tmp_path, cache):
    p = write(tmp_path / "a.png", image_bytes(size=(100, 100)))
    with pytest.raises(InvalidInput, match="10,000 pixels, over the limit of 5,000"):
        resolve_image(str(p), cache, max_pixels=5_000)
    assert resolve_image(str(p), cache, max_pixels=10_000) == p.resolve()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path, cache):
    p = write(tmp_path / "a.png", PNG)
    p.chmod(0)
    with pytest.raises(InvalidInput, match="not readable"):
        resolve_image(str(p), cache)


@pytest.mark.parametrize("ref", ["ftp://example.com/a.png", "data:image/png;base64,AAAA", "gs://b/a.jpg"])
def test_unsupported_scheme(cache, ref):
    with pytest.raises(InvalidInput, match="unsupported image reference"):
        resolve_image(ref, cache)


def test_s3_ref_without_keys_says_which_variables(cache, monkeypatch):
    """s3:// references are read like http(s) ones (tests/team); without keys, one line names them."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with pytest.raises(InvalidInput, match=r"could not read image 's3://bucket/a\.png'.*AWS_ACCESS_KEY_ID"):
        resolve_image("s3://bucket/a.png", cache)


@pytest.mark.parametrize(
    "ref,expect",
    [("", "empty"), ("   ", "empty"), ("http://[bad/x.png", "malformed"), ("http://", "could not download")],
)
def test_empty_or_malformed_ref(cache, ref, expect):
    with pytest.raises(InvalidInput, match=expect):
        resolve_image(ref, cache)


def test_load_image_is_rgb_and_exif_rotated(tmp_path, cache):
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.new("RGB", (40, 20), (0, 0, 255)).save(p, exif=exif)
    im = load_image(str(p), cache)
    assert im.mode == "RGB" and im.size == (20, 40)
    grey = write(tmp_path / "g.png", image_bytes(size=(5, 5)))
    Image.open(grey).convert("L").save(grey)
    assert load_image(str(grey), cache).mode == "RGB"


# --- URLs ------------------------------------------------------------------------------------


def test_url_downloads_once_into_content_addressed_cache(server, cache):
    base, hits = server
    first = resolve_image(f"{base}/img.png", cache)
    assert first.parent == cache and first.suffix == ".png"
    assert first.read_bytes() == PNG
    assert resolve_image(f"{base}/img.png", cache) == first
    assert hits["/img.png"] == 1  # second call served from the index
    # Same bytes under another URL and a misleading content-type: one file, named by content.
    assert resolve_image(f"{base}/same.bin", cache) == first
    assert resolve_image(f"{base}/redirect", cache) == first
    assert resolve_image(f"{base}/photo", cache).suffix == ".jpg"
    assert not list(cache.glob(".*.part")) and not list((cache / "urls").glob(".*.part"))
    assert load_image(f"{base}/img.png", cache).getpixel((0, 0)) == (200, 30, 40)
    assert hits["/img.png"] == 2  # the redirect fetched it once; load_image used the cache


def test_url_cache_survives_a_removed_content_file(server, cache):
    base, hits = server
    resolve_image(f"{base}/img.png", cache).unlink()
    assert resolve_image(f"{base}/img.png", cache).is_file()
    assert hits["/img.png"] == 2


@pytest.mark.parametrize(
    "path,kwargs,expect",
    [
        ("/missing.png", {}, "HTTP 404"),
        ("/page.html", {}, "not an image (server sent text/html"),
        ("/truncated.jpg", {}, "not an image"),
        ("/big", {"max_bytes": 100_000}, "over 100,000 bytes"),
        ("/big-declared", {"max_bytes": 100_000}, "over 100,000 bytes"),
        ("/slow", {"timeout": 0.2}, "timed out after 0.2s"),
        ("/img.png", {"max_pixels": 10}, "decompression bomb"),
    ],
)
def test_url_failures(server, cache, path, kwargs, expect):
    base, _ = server
    with pytest.raises(InvalidInput) as exc:
        resolve_image(f"{base}{path}", cache, **kwargs)
    assert expect in exc.value.what and exc.value.fix
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing half-written is left


def test_url_messages_hide_query_and_credentials(server, cache):
    base, _ = server
    url = f"{base}/missing.png?X-Amz-Signature=s3cr3t".replace("http://", "http://user:pw@")
    with pytest.raises(InvalidInput) as exc:
        resolve_image(url, cache)
    assert "s3cr3t" not in str(exc.value) and "pw" not in str(exc.value)
    assert "/missing.png?…" in str(exc.value)


def test_connection_refused(cache):
    with pytest.raises(InvalidInput, match="could not download"):
        resolve_image("http://127.0.0.1:9/a.png", cache, timeout=2)


# --- many at once ----------------------------------------------------------------------------


def test_verify_images_reports_bad_rows_and_dedupes(server, tmp_path, cache):
    base, hits = server
    local = write(tmp_path / "a.png", PNG)
    refs = [
        f"{base}/img.png",
        str(local),
        f"{base}/page.html",
        f"{base}/img.png",
        str(tmp_path / "gone.png"),
        f"{base}/page.html",
        "gs://bucket/x.png",
    ]
    calls = []
    good, bad = verify_images(refs, cache, workers=4, progress=lambda d, t: calls.append((d, t)))
    assert set(good) == {f"{base}/img.png", str(local)}
    assert good[str(local)] == str(local.resolve())
    assert [(i, r) for i, r, _ in bad] == [(2, refs[2]), (4, refs[4]), (5, refs[5]), (6, refs[6])]
    assert "not an image" in bad[0][2] and "not found" in bad[1][2] and "unsupported" in bad[3][2]
    assert all("\n" not in reason and " — " in reason for _, _, reason in bad)  # what — fix
    assert hits["/img.png"] == 1 and hits["/page.html"] == 1
    assert calls == [(i, 5) for i in range(1, 6)]
    assert verify_images([], cache) == ({}, [])


def test_concurrent_downloads_of_one_url_agree(server, cache):
    base, _ = server
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        paths = set(pool.map(lambda _: resolve_image(f"{base}/other.png", cache), range(16)))
    assert len(paths) == 1 and next(iter(paths)).read_bytes() == PNG2
    assert not list(cache.rglob(".*.part"))


def test_module_import_stays_light():
    import subprocess
    import sys

    code = "import sys, mixtrain.images; print('PIL' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
