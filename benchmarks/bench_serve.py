"""Serving throughput and overhead of ``mixtrain model serve`` (transformers engine, tiny model, CPU).

    .venv/bin/python benchmarks/bench_serve.py [--requests 64] [--clients 8] [--max-tokens 8] [--threads 1] [--keep]

Setup (untimed): a tiny random LLaVA and a random LoRA adapter on it (``mixtrain.testing``),
registered as ``colour`` in a fresh temporary ``MIXTRAIN_HOME``; the real CLI server on a free
loopback port (``--max-batch-size 8 --max-wait-ms 10``), warmed with a few requests.

(a) the same ``--requests`` chat completions (image as a data URL, greedy, ``--max-tokens``), sent one
    at a time, then from ``--clients`` concurrent clients: throughput ratio (dynamic batching) and
    p50/p95 latency of each. (b) per-request overhead of the server: the mean latency of a sequential
    request minus ``LoadedModel.generate`` on the same conversation and image, called directly in one
    Python process (same model, adapter and ``generate_batch`` path; measured after the server stops,
    so the two never share the CPU). Prints numbers only; asserts nothing. Run it alone
    (``flock /tmp/mixtrain-heavy.lock ...`` on a shared machine).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from common import MIXTRAIN, workspace

PROMPT = "What colour is the shape?"
SETUP = r"""
import sys
from mixtrain.client import MixClient
from mixtrain.testing.tiny_lora import make_tiny_lora
from mixtrain.testing.tiny_vlm import build_tiny_vlm
base = build_tiny_vlm("llava", sys.argv[1] + "/base")
MixClient().models.register("colour", base_model=str(base), model_type="llava", adapter_path=str(make_tiny_lora(base, sys.argv[1] + "/lora")),
                            train_loss=None, lineage={})
"""
DIRECT = r"""
import io, json, sys, time
from PIL import Image
import mixtrain
images, prompt, max_tokens, n = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = mixtrain.get_model("colour")
conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
pics = [Image.open(p).convert("RGB") for p in images]
for p in pics[:3]:
    model.generate([conv], [[p]], max_new_tokens=max_tokens)
times = []
for i in range(n):
    t0 = time.perf_counter()
    model.generate([conv], [[pics[i % len(pics)]]], max_new_tokens=max_tokens)
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the server and the direct baseline")
    ap.add_argument("--max-wait-ms", type=float, default=10.0, help="the server's batching window")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    import httpx
    from PIL import Image, ImageDraw

    tmp, env = workspace("mixtrain-bench-serve-", a.threads)
    try:
        subprocess.run([sys.executable, "-c", SETUP, str(tmp)], env=env, check=True, capture_output=True)
        paths = []
        for i, rgb in enumerate([(220, 30, 30), (30, 60, 220), (30, 170, 60), (240, 220, 40)]):
            im = Image.new("RGB", (64, 64), (250, 250, 250))
            ImageDraw.Draw(im).ellipse([8, 8, 56, 56], fill=rgb)
            im.save(tmp / f"img{i}.png")
            paths.append(str(tmp / f"img{i}.png"))
        urls = ["data:image/png;base64," + base64.b64encode(open(p, "rb").read()).decode() for p in paths]
        bodies = [
            {
                "model": "colour",
                "temperature": 0,
                "max_tokens": a.max_tokens,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": urls[i % len(urls)]}},
                            {"type": "text", "text": PROMPT},
                        ],
                    }
                ],
            }
            for i in range(a.requests)
        ]

        proc = subprocess.Popen(
            [
                MIXTRAIN,
                "model",
                "serve",
                "colour",
                "--port",
                "0",
                "--max-batch-size",
                "8",
                "--max-wait-ms",
                str(a.max_wait_ms),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(tmp / "server.log", "w"),
            text=True,
        )
        url = None
        for line in proc.stdout:
            if " at http://" in line:
                url = line.split(" at ", 1)[1].split()[0]
                break
        if url is None:
            raise SystemExit(f"server did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
        http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=a.clients * 2))

        def call(body) -> float:
            t0 = time.perf_counter()
            r = http.post(f"{url}/chat/completions", json=body)
            r.raise_for_status()
            return time.perf_counter() - t0

        for body in bodies[:4]:  # warm-up
            call(body)
        t0 = time.perf_counter()
        seq = [call(b) for b in bodies]
        seq_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as pool:
            conc = list(pool.map(call, bodies))
        conc_wall = time.perf_counter() - t0
        health = http.get(url.rsplit("/v1", 1)[0] + "/health").json()
        proc.terminate()
        proc.wait(120)

        out = subprocess.run(
            [sys.executable, "-c", DIRECT, json.dumps(paths), PROMPT, str(a.max_tokens), str(a.requests)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        direct = json.loads(out.stdout.strip().splitlines()[-1])

        def pct(xs, q):
            return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000

        print(
            f"mixtrain model serve — tiny LLaVA + LoRA, CPU, OMP_NUM_THREADS={a.threads}, {a.requests} requests, max_tokens {a.max_tokens}"
        )
        print(
            f"  sequential (1 client):   {a.requests / seq_wall:7.2f} req/s   p50 {pct(seq, 0.5):7.1f} ms   p95 {pct(seq, 0.95):7.1f} ms"
        )
        print(
            f"  concurrent ({a.clients} clients): {a.requests / conc_wall:7.2f} req/s   p50 {pct(conc, 0.5):7.1f} ms   p95 {pct(conc, 0.95):7.1f} ms"
        )
        print(
            f"  throughput ratio (batching): {seq_wall / conc_wall:.2f}x   (batches run: {health['batches']}, largest {health['largest_batch']})"
        )
        d, s = statistics.mean(direct), statistics.mean(seq)
        print(
            f"  direct LoadedModel.generate: mean {d * 1000:.1f} ms   server sequential: mean {s * 1000:.1f} ms"
            f"   -> server overhead {(s - d) * 1000:+.1f} ms/request"
        )
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
