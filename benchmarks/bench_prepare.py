"""Image verification at dataset scale, side by side with a plain single-process PIL loop in the same run.

    .venv/bin/python benchmarks/bench_prepare.py [--sizes 5000,50000] [--px 224]

Setup (untimed): N distinct 224-px JPEGs. Then, per size, each a fresh measurement in this process:
  raw    a plain single-process loop over the paths: PIL open + verify + reopen + load, i.e. a full
         decode of every file (what verification had to do per file before it got smarter)
  cold   mixtrain.images.verify_images with an empty cache: a process pool over the cores; per file
         one lstat, one read, and a JPEG decoded at 1/8 scale (libjpeg still reads the whole entropy-
         coded stream, where damage shows; tests/unit/test_verify_quick.py shows on damaged JPEGs
         that it refuses exactly the files the full decode refuses); a file it does not pass goes
         through the full resolve_image for its reason; then the cache of verified files is written
  warm   the same call again: unchanged files (same path, size, mtime) are not decoded again
Prints the median seconds of --repeat rounds and their ratios raw/cold (target >= 1.5 on 2 cores) and
raw/warm (target >= 10); the CPU seconds of raw and cold (cold: this process and its pool's workers),
which say how much of the gain is less work rather than more cores; and the load average before and
after (the pool itself adds up to 2 to it). The cores are shared and their speed drifts: run it again
when the load is high.
Measures verification, the part of preparation that decodes; reading the table and writing the JSONL
are timed by bench_finetune (its "prepare done" phase). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def make_images(folder: Path, n: int, px: int) -> list[str]:
    import random

    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    base = Image.new("RGB", (px, px))
    out = []
    for i in range(n):
        im = base.copy()
        d = ImageDraw.Draw(im)
        d.rectangle(
            [rng.randrange(px // 2), rng.randrange(px // 2), px - 1, px - 1],
            fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)),
        )
        p = folder / f"{i:06d}.jpg"
        im.save(p, quality=90)
        out.append(str(p))
    return out


def raw_loop(paths: list[str]) -> None:
    from PIL import Image

    for p in paths:
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            im.load()


def cpu_seconds() -> float:
    """This process's CPU time plus its reaped children's (the pool's workers are joined when it closes)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--px", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of raw, cold, warm; medians are printed")
    args = ap.parse_args()
    from mixtrain.images import verify_images

    tmp = Path(tempfile.mkdtemp(prefix="mixtrain-bench-prep-"))
    try:
        print(f"{os.cpu_count()} CPUs; images in {tmp}; median of {args.repeat} rounds (raw, cold, warm in turn)")
        print(
            "\n| images | raw loop s | cold s | warm s | raw/cold | raw/warm | CPU s raw / cold | load before → after |"
        )
        print(
            "|--------|------------|--------|--------|----------|----------|------------------|---------------------|"
        )
        for n in (int(s) for s in args.sizes.split(",")):
            paths = make_images(tmp / f"img{n}", n, args.px)
            load0 = os.getloadavg()[0]
            times: dict[str, list[float]] = {"raw": [], "cold": [], "warm": []}
            cpu: dict[str, list[float]] = {"raw": [], "cold": [], "warm": []}
            for r in range(args.repeat):
                t0, c0 = time.perf_counter(), cpu_seconds()
                raw_loop(paths)
                times["raw"].append(time.perf_counter() - t0)
                cpu["raw"].append(cpu_seconds() - c0)
                cache = tmp / f"cache{n}-{r}"  # empty: a cold run
                for phase in ("cold", "warm"):
                    t0, c0 = time.perf_counter(), cpu_seconds()
                    good, bad = verify_images(paths, cache)
                    times[phase].append(time.perf_counter() - t0)
                    cpu[phase].append(cpu_seconds() - c0)
                    assert len(good) == n and not bad
            raw, cold, warm = (statistics.median(times[k]) for k in ("raw", "cold", "warm"))
            raw_cpu, cold_cpu = statistics.median(cpu["raw"]), statistics.median(cpu["cold"])
            print(
                f"| {n:6d} | {raw:10.2f} | {cold:6.2f} | {warm:6.2f} | {raw / cold:8.2f} | {raw / warm:8.1f} "
                f"| {raw_cpu:7.2f} / {cold_cpu:6.2f} | {load0:.2f} → {os.getloadavg()[0]:.2f} |",
                flush=True,
            )
        print("\ntargets: raw/cold >= 1.5, raw/warm >= 10 (shared cores: a high load average means a noisy figure)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
