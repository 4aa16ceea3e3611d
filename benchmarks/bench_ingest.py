"""Image ingest and dataset query, each side by side with the raw baseline in the same run.

    .venv/bin/python benchmarks/bench_ingest.py [--rows 20000] [--query-rows 2000000]

(a) ``DatasetStore.create`` of a Hugging Face Parquet (written by ``datasets`` with an ``Image()``
column: 224-px JPEGs embedded as bytes) — every image decoded, verified and stored content-addressed,
the table holding references — versus the raw path a user writes with ``datasets``: ``load_dataset``
of the same file, then a loop saving each image to disk. Each runs in a fresh process; rows/s, peak
memory (the process's max RSS; ours decodes in threads) and the ratio ours/raw (target >= 1.5x,
peak <= 1 GiB) are printed.
(b) ``dataset query`` GROUP BY over a 2M-row dataset versus PyIceberg's full scan → pandas groupby.
Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
SRC = str(Path(__file__).resolve().parents[1] / "src")

OURS = r"""
import json, os, resource, sys, time
os.environ["MIXTRAIN_HOME"] = sys.argv[2]
t0 = time.perf_counter()
from mixtrain.datasets.store import DatasetStore
from mixtrain.settings import load_settings
store = DatasetStore(load_settings())
store.create("bench", sys.argv[1])
dt = time.perf_counter() - t0
rows = store.get("bench").scan(selected_fields=("question",)).to_arrow().num_rows
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": dt, "rows": rows, "peak_kib": me, "worker_peak_kib": kids,
                  "images": store.last_report.images, "bad": len(store.last_report.bad)}))
"""

RAW = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import datasets
datasets.disable_progress_bars()
ds = datasets.load_dataset("parquet", data_files=sys.argv[1], split="train", cache_dir=sys.argv[2] + "/hf-cache")
out = sys.argv[2] + "/images"
os.makedirs(out, exist_ok=True)
for i, row in enumerate(ds):
    row["image"].save(f"{out}/{i}.jpg")
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rows": len(ds), "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_parquet(path: Path, rows: int) -> None:
    """20k distinct 224-px JPEGs, written by `datasets` with an Image() feature (the Hub's shape)."""
    import datasets
    from PIL import Image, ImageDraw

    feats = datasets.Features(
        {
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answers": datasets.Sequence(datasets.Value("string")),
        }
    )

    def gen():
        for i in range(rows):
            im = Image.new("RGB", (224, 224), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))
            d = ImageDraw.Draw(im)
            d.rectangle([i % 150, (i * 7) % 150, i % 150 + 60, (i * 7) % 150 + 50], fill=((i * 5) % 256, 40, 200))
            d.text((10, 10), str(i), fill="white")
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            yield {
                "image": {"bytes": buf.getvalue(), "path": f"{i}.jpg"},
                "question": "What is shown?",
                "answers": ["a box", str(i)],
            }

    ds = datasets.Dataset.from_generator(gen, features=feats, cache_dir=str(path.parent / "gen-cache"))
    ds.to_parquet(str(path))


def child(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([PY, "-c", code, *args], capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_ingest(root: Path, rows: int) -> None:
    src = root / "hf.parquet"
    t0 = time.perf_counter()
    make_parquet(src, rows)
    print(f"# wrote {rows} rows, {src.stat().st_size / 2**20:.1f} MiB ({time.perf_counter() - t0:.1f}s)", flush=True)
    raw = child(RAW, str(src), str(root / "raw"))
    ours = child(OURS, str(src), str(root / "home"))
    ratio = (ours["rows"] / ours["seconds"]) / (raw["rows"] / raw["seconds"])
    print(
        f"ingest  raw (datasets load + save loop): {raw['rows'] / raw['seconds']:8.0f} rows/s  {raw['seconds']:6.1f}s  peak {raw['peak_kib'] / 2**20:.2f} GiB"
    )
    print(
        f"ingest  ours (dataset create):            {ours['rows'] / ours['seconds']:8.0f} rows/s  {ours['seconds']:6.1f}s  "
        f"peak {ours['peak_kib'] / 2**20:.2f} GiB (threads; child processes {ours['worker_peak_kib'] / 2**20:.2f} GiB)  "
        f"images stored {ours['images']}, bad {ours['bad']}"
    )
    print(f"ingest  ratio ours/raw rows/s: {ratio:.2f}x (target >= 1.5x; peak target <= 1 GiB)", flush=True)


def bench_query(root: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.environ["MIXTRAIN_HOME"] = str(root / "qhome")
    sys.path.insert(0, SRC)
    from mixtrain.datasets.query import run_query
    from mixtrain.datasets.store import DatasetStore
    from mixtrain.settings import load_settings

    rng = np.random.default_rng(0)
    labels = np.array([f"label-{i:03d}" for i in range(100)])
    table = pa.table(
        {"label": labels[rng.integers(0, 100, rows)], "score": rng.random(rows), "n": rng.integers(0, 1000, rows)}
    )
    pq.write_table(table, root / "q.parquet")
    store = DatasetStore(load_settings())
    store.create("big", root / "q.parquet")
    sql = "SELECT label, count(*) AS rows, avg(score) AS mean FROM big WHERE n < 500 GROUP BY label ORDER BY label"
    best_ours = best_raw = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        ours = run_query(store, sql)
        best_ours = min(best_ours, time.perf_counter() - t0)
        t0 = time.perf_counter()
        df = store.get("big").scan().to_pandas()
        raw = df[df.n < 500].groupby("label").agg(rows=("score", "size"), mean=("score", "mean"))
        best_raw = min(best_raw, time.perf_counter() - t0)
    assert ours.num_rows == len(raw)
    print(f"query   ours (dataset query GROUP BY, {rows:,} rows): {best_ours:6.3f}s")
    print(f"query   raw (PyIceberg full scan → pandas groupby):   {best_raw:6.3f}s")
    print(f"query   ratio raw/ours: {best_raw / best_ours:.1f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--query-rows", type=int, default=2_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench_ingest(root, args.rows)
        bench_query(root, args.query_rows)


if __name__ == "__main__":
    main()
