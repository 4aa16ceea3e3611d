"""Download the wheels bench_gpu.py needs on a lent GPU machine and split them into parts that fit one call each.

    .venv/bin/python benchmarks/gpu_wheels.py [--python-version 3.11] [--part-mib 60] [--out wheels]

Why: the lent machine has torch and transformers but no package registry, and one call carries at most
64 MiB. ``benchmarks/gpu_requirements.txt`` pins exactly the distributions the benchmark's processes import
beyond torch + transformers (measured; see benchmarks/README.md). This downloads them with
``pip download --no-deps`` for the target Python and manylinux x86_64, then packs them (largest first)
into ``wheels/gpu-1``, ``wheels/gpu-2``, ... each at most ``--part-mib``; it prints the sizes and the
``run`` calls to make. ``wheels/`` is ignored by git.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux2014_x86_64",
    "linux_x86_64",
)


def download(req: str, dest: Path, python_version: str) -> None:
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest)]
    binary = [*base, "--only-binary=:all:", "--python-version", python_version, *plat, req]
    if subprocess.run(binary, capture_output=True).returncode != 0:  # pure-Python packages published as sdist only
        subprocess.run([*base, req], check=True)


def pack(files: list[Path], limit: int) -> list[list[Path]]:
    parts: list[list[Path]] = []
    sizes: list[int] = []
    for f in sorted(files, key=lambda p: p.stat().st_size, reverse=True):
        size = f.stat().st_size
        if size > limit:
            raise SystemExit(f"{f.name} is {size / 2**20:.1f} MiB: more than one call can carry")
        for i, used in enumerate(sizes):
            if used + size <= limit:
                parts[i].append(f)
                sizes[i] += size
                break
        else:
            parts.append([f])
            sizes.append(size)
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python-version", default="3.11", help="the lent machine's Python (its first call prints it)")
    ap.add_argument("--part-mib", type=int, default=60, help="at most this many MiB per part (a call carries 64)")
    ap.add_argument("--requirements", type=Path, default=HERE / "gpu_requirements.txt")
    ap.add_argument("--out", type=Path, default=HERE.parent / "wheels")
    args = ap.parse_args()
    reqs = [ln.split("#")[0].strip() for ln in args.requirements.read_text().splitlines()]
    reqs = [r for r in reqs if r]
    pool = args.out / "_all"
    pool.mkdir(parents=True, exist_ok=True)
    for req in reqs:
        download(req, pool, args.python_version)
    files = [p for p in pool.iterdir() if p.is_file()]
    parts = pack(files, args.part_mib * 2**20)
    for i, part in enumerate(parts, 1):
        d = args.out / f"gpu-{i}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for f in part:
            shutil.copy2(f, d / f.name)
        print(f"{d}: {len(part)} files, {sum(f.stat().st_size for f in part) / 2**20:.1f} MiB")
    total = sum(f.stat().st_size for f in files)
    print(f"total {len(files)} files, {total / 2**20:.1f} MiB in {len(parts)} parts (one warm-machine call each)")


if __name__ == "__main__":
    main()
