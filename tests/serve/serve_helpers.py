"""Serve-test helpers: tiny models + adapters registered in an isolated home, the real `mixtrain model serve`
started on a free loopback port, and a loopback HTTP server for image URLs."""

from __future__ import annotations

import base64
import io
import os
import queue
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]

SETUP = """
import sys
from mixtrain.client import MixClient
from mixtrain.testing.tiny_lora import make_tiny_lora
from mixtrain.testing.tiny_vlm import build_tiny_vlm
root = sys.argv[1]
base = build_tiny_vlm("llava", f"{root}/base")
c = MixClient()
for seed, name in ((1, "colour"), (2, "shape")):
    c.models.register(name, base_model=str(base), model_type="llava", train_loss=None, lineage={},
                      adapter_path=str(make_tiny_lora(base, f"{root}/{name}", seed=seed)))
c.models.register_base("tiny", str(base), "llava")
"""


def env_for(home: Path) -> dict:
    env = dict(
        os.environ,
        MIXTRAIN_HOME=str(home),
        COLUMNS="200",
        NO_COLOR="1",
        PATH=f"{BIN}:{os.environ['PATH']}",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    for key in ("MIXTRAIN_DATABASE_URL", "MIXTRAIN_CATALOG_URL", "MIXTRAIN_WAREHOUSE"):
        env.pop(key, None)
    return env


def setup_models(root: Path, env: dict) -> None:
    """Tiny LLaVA + two random adapters on it, registered as colour, shape and (the base) tiny."""
    subprocess.run([sys.executable, "-c", SETUP, str(root)], env=env, check=True, timeout=600, capture_output=True)


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
