"""Serve-test pieces: tiny models + adapters registered in an isolated home, the real `mixtrain model serve`
started on a free loopback port, and a loopback HTTP server for image URLs."""

from __future__ import annotations

import base64
import io
import queue
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness.cli import BIN

SETUP = """
import sys
from mixtrain.client import MixClient
from mixtrain.testing.tiny_lora import make_tiny_lora
root, base = sys.argv[1:3]
c = MixClient()
for seed, name in ((1, "colour"), (2, "shape")):
    c.models.register(name, base_model=str(base), model_type="llava", train_loss=None, lineage={},
                      adapter_path=str(make_tiny_lora(base, f"{root}/{name}", seed=seed)))
c.models.register_base("tiny", str(base), "llava")
"""


def setup_models(root: Path, env: dict, base: Path) -> None:
    """Two random adapters on the tiny LLaVA ``base``, registered as colour, shape and (the base) tiny."""
    proc = subprocess.run(
        [sys.executable, "-c", SETUP, str(root), str(base)], env=env, timeout=600, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


class Server:
    """`mixtrain model serve ... --port 0` as a child process; ``url`` is read from what it prints."""

    def __init__(self, env: dict, *args: str, log: Path):
        self.log = log
        self.proc = subprocess.Popen(
            [str(BIN / "mixtrain"), "model", "serve", *args, "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),
            text=True,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(x) for x in self.proc.stdout] + [lines.put(None)], daemon=True
        ).start()
        self.stdout = []
        while True:
            line = lines.get(timeout=600)
            if line is None:
                raise AssertionError(
                    f"server exited {self.proc.wait()}:\n{''.join(self.stdout)}\n{log.read_text()[-3000:]}"
                )
            self.stdout.append(line)
            if " at http://" in line:
                self.url = line.split(" at ", 1)[1].split()[0]  # http://127.0.0.1:PORT/v1
                self.root = self.url.rsplit("/v1", 1)[0]
                return

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def png(color=(200, 30, 30), size=(64, 64)) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, (250, 250, 250))
    m = size[0] // 8
    ImageDraw.Draw(im).ellipse([m, m, size[0] - m, size[1] - m], fill=color)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


class ImageHost:
    """A loopback HTTP server: /<name>.png from ``files``, anything else 404 (and /page.html is HTML)."""

    def __init__(self, files: dict[str, bytes]):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                if name == "page.html":
                    body, ctype = b"<html>not an image</html>", "text/html"
                elif name in host.files:
                    body, ctype = host.files[name], "image/png"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.files = files
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
