"""Preflight at dataset scale: tokens per row, image tokens included — our path and the plain loop in one run.

    .venv/bin/python benchmarks/bench_preflight.py [--sizes 5000,50000] [--family qwen2_vl] [--raw-max 50000]

Setup (untimed): the family's tiny model (built locally by mixtrain.testing) and N training rows over
500 JPEGs of 500 different sizes (so image-token counts vary, as with users' photos).
  raw    a single-process loop: ``processor.apply_chat_template(tokenize=True)`` on every row, images
         loaded (what the preflight did before, on at most 2,000 rows)
  ours   ``mixtrain.vlm.measure.measure``: the real processor on every row of a table up to 2,000 rows,
         beyond that on a seeded 2,000-row sample plus the length pass over every row (text tokens +
         image tokens per image size from the headers); forked processes over the cores
Both give every row's length; the script checks they are equal on every row and prints seconds and
raw/ours. Sizes above ``--raw-max`` skip the raw loop (printed as such). Asserts nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def images(folder: Path, n: int = 500) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    out = []
    for i in range(n):
        size = (rng.randrange(64, 640), rng.randrange(64, 640))
        path = folder / f"{i:04d}.jpg"
        Image.new("RGB", size, (rng.randrange(256), 80, 160)).save(path, quality=85)
        out.append(str(path))
    return out


def rows(paths: list[str], n: int) -> list[dict]:
    from mixtrain.vlm.prepare import to_messages

    rng = random.Random(1)
    words = ["what", "colour", "is", "the", "shape", "in", "this", "picture", "please", "answer", "briefly"]
    return [
        to_messages(
            paths[i % len(paths)],
            " ".join(rng.choice(words) for _ in range(rng.randrange(3, 40))),
            " ".join(rng.choice(words) for _ in range(rng.randrange(1, 30))),
        )
        for i in range(n)
    ]


def raw_loop(proc, template, examples: list[dict]) -> list[int]:
    out = []
    for ex in examples:
        ids = proc.apply_chat_template(ex["messages"], chat_template=template, tokenize=True, return_dict=True)[
            "input_ids"
        ]
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        out.append(len(ids[0] if ids and isinstance(ids[0], list) else ids))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--family", default="qwen2_vl")
    ap.add_argument("--raw-max", type=int, default=50000, help="largest table the raw loop runs on")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoProcessor

    from mixtrain.testing.tiny_vlm import build_tiny_vlm
    from mixtrain.vlm import configure, families
    from mixtrain.vlm.measure import measure

    tmp = Path(tempfile.mkdtemp(prefix="mixtrain-bench-preflight-"))
    try:
        model = tmp / args.family
        build_tiny_vlm(args.family, str(model))
        proc = AutoProcessor.from_pretrained(model, use_fast=False)  # as the CPU training config loads it
        template = configure.chat_template_settings(families.get_family(args.family)).get("chat_template_jinja")
        paths = images(tmp / "img")
        cpus = len(os.sched_getaffinity(0))
        print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.2f}; tiny {args.family}, 500 distinct image sizes")
        print("\n| rows | raw loop s | ours s | raw/ours | rows through the processor (ours) | same lengths |")
        print("|------|------------|--------|----------|------------------------------------|--------------|")
        for n in (int(s) for s in args.sizes.split(",")):
            examples = rows(paths, n)
            t0 = time.perf_counter()
            m = measure(proc, template, examples)
            ours = time.perf_counter() - t0
            if n <= args.raw_max:
                t0 = time.perf_counter()
                expected = raw_loop(proc, template, examples)
                raw = time.perf_counter() - t0
                same = "yes" if expected == m.lengths else "NO"
                cells = f"{raw:10.1f} | {ours:6.1f} | {raw / ours:8.1f}"
            else:
                same, cells = "(not run)", f"{'(skipped)':>10} | {ours:6.1f} | {'-':>8}"
            print(f"| {n:5d} | {cells} | {m.processor_rows:34d} | {same:12} |", flush=True)
        print(
            f"\nload average now {os.getloadavg()[0]:.2f} (shared cores: noisy); method at the largest size: {m.method}"
        )
        print(json.dumps({"tokens_max": max(m.lengths), "image_tokens_max": max(m.image_tokens)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
