"""Dashboard pages on large data, side by side with the raw store reads they replace.

    python benchmarks/bench_ui.py [--rows 100000] [--runs 1000]

A 100k-row dataset's last page vs reading the whole table with PyIceberg (what a naive page would
do); a 1,000-run workflow page vs listing every run through the SDK. Prints ratios (page / raw).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MIXTRAIN, timed, workspace


def best(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    tmp, env = workspace("mixtrain-bench-ui-")
    os.environ.update(env)
    from PIL import Image

    img = tmp / "a.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(img)
    data = tmp / "big.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["idx", "image", "text"])
        w.writerows((i, str(img), f"row {i}") for i in range(args.rows))
    timed([MIXTRAIN, "dataset", "create", "big", "--file", data], env)
    flow = Path(__file__).resolve().parents[1] / "tests/ui/flows/sleepy.py"
    timed([MIXTRAIN, "workflow", "create", flow, "--name", "sleepy"], env)

    from fastapi.testclient import TestClient

    from mixtrain.client import MixClient
    from mixtrain.ui.app import create_app

    c = MixClient()
    for _ in range(args.runs):
        run = c.workflows.new_run("sleepy", 1, {"label": "b", "lines": 0, "delay": 0.0, "mode": "plain"})
        c.workflows.set_status(run["id"], "completed")
    web = TestClient(create_app(c), base_url="http://127.0.0.1")
    last = -(-args.rows // 50)
    assert web.get(f"/datasets/big?page={last}").status_code == 200

    def fresh_page():  # a page not cached yet: the scan happens each time
        from mixtrain.ui import routes_datasets

        routes_datasets._page.cache_clear()
        web.get(f"/datasets/big?page={last}")

    rows = [
        ("dataset last page (uncached)", best(fresh_page), best(lambda: c.get_dataset("big").scan().to_pandas())),
        (
            "dataset page (cached snapshot)",
            best(lambda: web.get(f"/datasets/big?page={last}")),
            best(lambda: c.get_dataset("big").scan().to_pandas()),
        ),
        (
            "workflow runs page 40",
            best(lambda: web.get("/workflows/sleepy?page=40")),
            best(lambda: c.list_runs("sleepy")),
        ),
    ]
    print(f"{'case':34} {'page s':>8} {'raw s':>8} {'page/raw':>9}")
    for name, page, raw in rows:
        print(f"{name:34} {page:8.4f} {raw:8.4f} {page / raw:9.2f}")
    print(f"(raw = whole {args.rows}-row table to pandas / all {args.runs} runs through MixClient.list_runs)")


if __name__ == "__main__":
    main()
