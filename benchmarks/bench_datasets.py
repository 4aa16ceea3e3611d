"""Dataset ingest and CLI start-up, side by side with the raw baseline in the same run.

    .venv/bin/python benchmarks/bench_datasets.py [--rows 200000] [--reps 3] [--help-reps 10]

(a) ``mixtrain dataset create`` through the installed CLI (a fresh process, as a user runs it) versus
(b) the raw path a user could write: ``pyarrow.csv.read_csv`` + PyIceberg ``SqlCatalog.create_table`` +
``append`` into a separate temporary catalog, also in a fresh process. Repeated interleaved; medians and
the ratio raw/ours (target >= 0.85) are printed. Then ``mixtrain --help`` versus ``python -c pass``
(target: --help <= 0.25 s). Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from common import MIXTRAIN, timed

RAW = r"""
import json, sys, time
t0 = time.perf_counter()
import pyarrow.csv as pc
from pyiceberg.catalog.sql import SqlCatalog
t1 = time.perf_counter()
path, root = sys.argv[1], sys.argv[2]
table = pc.read_csv(path, parse_options=pc.ParseOptions(newlines_in_values=True))
t2 = time.perf_counter()
catalog = SqlCatalog("raw", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/warehouse")
catalog.create_namespace_if_not_exists("raw")
tbl = catalog.create_table(("raw", "data"), schema=table.schema)
tbl.append(table)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "read": t2 - t1, "write": t3 - t2, "rows": table.num_rows}))
"""

SUBJECTS = [
    "cat",
    "dog",
    "red car",
    "blue bus",
    "lighthouse",
    "bowl of fruit",
    "mountain lake",
    "street market",
    "owl",
    "bicycle",
]
PROMPTS = [
    "Describe this image",
    "What animal is this?",
    "What color is the vehicle?",
    "Describe it, briefly",  # a comma inside a quoted field
    "List the objects you see, left to right",
    "Is there a person in the picture? Answer yes or no.",
]
WORDS = [
    "the",
    "a",
    "an",
    "of",
    "in",
    "on",
    "with",
    "near",
    "under",
    "beside",
    "large",
    "small",
    "bright",
    "dark",
    "wooden",
    "metal",
    "old",
    "new",
    "sitting",
    "standing",
    "looking",
    "playing",
    "parked",
    "floating",
    "resting",
    "open",
    "closed",
    "window",
    "park",
    "road",
    "table",
    "shelf",
    "sky",
    "water",
    "light",
]


def make_csv(path: Path, rows: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
        w.writerow(["image_path", "prompt", "response"])
        for i in range(rows):
            subject = rng.choice(SUBJECTS)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 40)))
            response = f"A {subject} {words}."
            if i % 7 == 0:
                response += (
                    f" Also, in the background: {rng.choice(SUBJECTS)}, {rng.choice(SUBJECTS)}."  # quoted commas
                )
            if i % 50 == 0:
                response += "\nSecond line of the answer."  # a newline inside a quoted field
            w.writerow([f"/data/images/{subject.replace(' ', '_')}_{i:07d}.jpg", rng.choice(PROMPTS), response])
    return path.stat().st_size


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXTRAIN_")}
    env["MIXTRAIN_HOME"] = str(home)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--help-reps", type=int, default=10)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mixtrain-bench-ds-"))
    try:
        data = tmp / "training_data.csv"
        size = make_csv(data, args.rows)
        print(f"CSV: {args.rows} rows, {size / 1e6:.1f} MB ({data})\n")

        ours, raw, raw_parts, ours_rows, first_use = [], [], [], None, []
        for rep in range(args.reps):
            home = tmp / f"home{rep}"
            # An existing home, as a user has after their first command: its one-time set-up (metadata
            # DB migration, catalog tables) is measured separately below, not in every ingest.
            first_use.append(timed([MIXTRAIN, "dataset", "list"], clean_env(home))[0])
            took, proc = timed([MIXTRAIN, "dataset", "create", "bench-data", "--file", str(data)], clean_env(home))
            ours.append(took)
            ours_rows = proc.stdout.strip()
            root = tmp / f"raw{rep}"
            root.mkdir()
            took, proc = timed([sys.executable, "-c", RAW, str(data), str(root)], clean_env(tmp / "unused"))
            raw.append(took)
            raw_parts.append(json.loads(proc.stdout))
            print(f"  rep {rep + 1}: mixtrain {ours[-1]:.2f} s   raw {raw[-1]:.2f} s")
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
        assert all(p["rows"] == args.rows for p in raw_parts), raw_parts
        m_ours, m_raw = statistics.median(ours), statistics.median(raw)
        print(f"\n  ours says: {ours_rows}")
        print("\n| ingest (fresh process each)            | median s | rows/s     |")
        print("|----------------------------------------|----------|------------|")
        print(f"| mixtrain dataset create (CLI)          | {m_ours:8.2f} | {args.rows / m_ours:10,.0f} |")
        print(f"| raw pyarrow.csv + SqlCatalog append    | {m_raw:8.2f} | {args.rows / m_raw:10,.0f} |")
        for part in ("import", "read", "write"):
            print(f"|   raw: {part:<32}| {statistics.median(p[part] for p in raw_parts):8.2f} |            |")
        print(f"| (one-time: first command in a new home)| {statistics.median(first_use):8.2f} |            |")
        ratio = m_raw / m_ours
        print(f"\nratio raw/ours = {ratio:.2f}  (target >= 0.85: {'met' if ratio >= 0.85 else 'MISSED'})")

        # -- start-up -------------------------------------------------------------------------------
        env = clean_env(tmp / "help-home")
        helps, passes = [], []
        for _ in range(args.help_reps):
            helps.append(timed([MIXTRAIN, "--help"], env)[0])
            passes.append(timed([sys.executable, "-c", "pass"], env)[0])
        m_help, m_pass = statistics.median(helps), statistics.median(passes)
        print("\n| start-up                | median s |")
        print("|-------------------------|----------|")
        print(f"| mixtrain --help         | {m_help:8.3f} |")
        print(f"| python -c pass          | {m_pass:8.3f} |")
        print(
            f"\n--help costs {m_help - m_pass:.3f} s over a bare interpreter; ratio help/pass = {m_help / m_pass:.1f}x"
            f"  (target <= 0.25 s: {'met' if m_help <= 0.25 else 'MISSED'})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
