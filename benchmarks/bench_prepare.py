"""Image verification at dataset scale, side by side with a plain single-process PIL loop in the same run.

    .venv/bin/python benchmarks/bench_prepare.py [--sizes 5000,50000] [--px 224]

Setup (untimed): N distinct 224-px JPEGs. Then, per size, each a fresh measurement in this process:
  raw    a single-process loop: PIL open + verify + reopen + load (what verification must do per file)
  cold   mixtrain.images.verify_images with an empty cache (process pool over the cores for local files)
  warm   the same call again: unchanged files (same path, size, mtime) are not decoded again
Prints seconds and the ratios raw/cold (target >= 1.5 on 2 cores) and raw/warm (target >= 10).
Measures verification, the part of preparation that decodes; reading the table and writing the JSONL
are timed by bench_finetune (its "prepare done" phase). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--px", type=int, default=224)
    args = ap.parse_args()
    from mixtrain.images import verify_images

    tmp = Path(tempfile.mkdtemp(prefix="mixtrain-bench-prep-"))
    try:
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; images in {tmp}")
        print("\n| images | raw loop s | cold s | warm s | raw/cold | raw/warm |")
        print("|--------|------------|--------|--------|----------|----------|")
        for n in (int(s) for s in args.sizes.split(",")):
            paths = make_images(tmp / f"img{n}", n, args.px)
            t0 = time.perf_counter()
            raw_loop(paths)
            raw = time.perf_counter() - t0
            cache = tmp / f"cache{n}"
            t0 = time.perf_counter()
            good, bad = verify_images(paths, cache)
            cold = time.perf_counter() - t0
            assert len(good) == n and not bad
            t0 = time.perf_counter()
            good, bad = verify_images(paths, cache)
            warm = time.perf_counter() - t0
            assert len(good) == n and not bad
            print(
                f"| {n:6d} | {raw:10.2f} | {cold:6.2f} | {warm:6.2f} | {raw / cold:8.2f} | {raw / warm:8.1f} |",
                flush=True,
            )
        print(
            f"\ntargets: raw/cold >= 1.5, raw/warm >= 10; load average now {os.getloadavg()[0]:.2f} (shared cores: noisy)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
