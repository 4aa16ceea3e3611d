"""Make the index's CUDA-only torchvision importable beside a CPU-only torch.

Why this exists: Qwen2-VL / Qwen2.5-VL processors import torchvision (their video processor), but the
only torchvision wheels on our package index (0.27.x-0.29.x) are CUDA builds. Their compiled ops
(`torchvision/_C.so`) link against `libtorch_cuda.so` / `libc10_cuda.so`, which a CPU torch does not
ship, so the library fails to load. torchvision tolerates that for every op except two: in
`torchvision/_meta_registrations.py`, `nms` and `qnms` register their fake (meta) kernels with an
unconditional `@torch.library.register_fake("torchvision::nms")`, which raises
`RuntimeError: operator torchvision::nms does not exist` when the C ops are missing -- and that error
then breaks every `import transformers` that touches torchvision.

The fix is the smallest one that works: guard those two decorators with `torchvision.extension._has_ops()`,
exactly as the same file already guards every other op (`register_meta`). Nothing else changes: the
pure-Python parts of torchvision (transforms, PIL paths) work; the compiled ops (nms, roi_align,
image decoding via torchvision.io) stay unavailable, which our CPU path never uses. On CPU we also
use the PIL image processors (`processor_kwargs: {use_fast: false}`).

The script is idempotent and does nothing when
  * torch is a CUDA build (a normal GPU install: CUDA torch + CUDA torchvision import fine), or
  * torchvision already imports.
When torchvision is missing on a CPU torch it installs the matching release with `--no-deps`
(its metadata pins an exact torch; `--no-deps` guarantees pip never swaps our CPU torch).

Usage: python scripts/torchvision_cpu_compat.py [--check] [--no-install]
Exit status: 0 when torchvision imports afterwards (or nothing needed doing), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

MARKER = "# mixtrain: guarded for CPU torch (scripts/torchvision_cpu_compat.py)"
# `@torch.library.register_fake("torchvision::nms")` and the same for qnms, on their own lines.
FAKE_DECORATOR = re.compile(r'^@torch\.library\.register_fake\(("torchvision::\w+")\)[ \t]*$', re.MULTILINE)


def _probe(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter: a failed torchvision import poisons the process that tried."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def _torch_has_cuda() -> bool:
    res = _probe("import torch, sys; sys.stdout.write(str(torch.version.cuda))")
    if res.returncode != 0:
        raise SystemExit(f"torch does not import: {res.stderr.strip()[-500:]}")
    return res.stdout.strip() not in ("", "None")


def _torchvision_imports() -> tuple[bool, str]:
    res = _probe("import torchvision, torchvision.transforms.v2.functional")
    return res.returncode == 0, res.stderr.strip()[-800:]


def _matching_torchvision_spec() -> str:
    """torchvision 0.(N+15) pairs with torch 2.N (0.28 <-> 2.13)."""
    res = _probe("import torch, sys; sys.stdout.write(torch.__version__)")
    major, minor = (int(x) for x in res.stdout.split("+")[0].split(".")[:2])
    if major != 2:
        raise SystemExit(f"unexpected torch version {res.stdout!r}: install a matching torchvision yourself")
    return f"torchvision==0.{minor + 15}.*"


def _install_torchvision() -> None:
    spec = _matching_torchvision_spec()
    print(f"torchvision_cpu_compat: installing {spec} --no-deps")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", spec], check=True)


def _meta_registrations_path() -> Path:
    spec = importlib.util.find_spec("torchvision")  # finds the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("torchvision is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "_meta_registrations.py"


def patch_source(text: str) -> tuple[str, int]:
    """Return `text` with each unconditional fake-op registration guarded, and how many were guarded."""
    guarded = "@(torch.library.register_fake(\\1) if torchvision.extension._has_ops() else (lambda fn: fn))  " + MARKER
    return FAKE_DECORATOR.subn(guarded, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="report only; change nothing")
    ap.add_argument("--no-install", action="store_true", help="do not pip-install torchvision when missing")
    args = ap.parse_args(argv)

    if _torch_has_cuda():
        print("torchvision_cpu_compat: torch has CUDA; nothing to do")
        return 0
    if importlib.util.find_spec("torchvision") is None:
        if args.check or args.no_install:
            print("torchvision_cpu_compat: torchvision is not installed")
            return 1
        _install_torchvision()
    ok, err = _torchvision_imports()
    if ok:
        print("torchvision_cpu_compat: torchvision imports; nothing to do")
        return 0
    if args.check:
        print(f"torchvision_cpu_compat: torchvision does not import:\n{err}")
        return 1

    path = _meta_registrations_path()
    text = path.read_text()
    new_text, n = patch_source(text)
    if n == 0 and MARKER not in text:
        print(f"torchvision_cpu_compat: no fake-op registration to guard in {path}; error was:\n{err}")
        return 1
    if n:
        path.write_text(new_text)
        print(f"torchvision_cpu_compat: guarded {n} fake-op registration(s) in {path}")
    ok, err = _torchvision_imports()
    if not ok:
        print(f"torchvision_cpu_compat: torchvision still does not import:\n{err}")
        return 1
    print("torchvision_cpu_compat: torchvision imports (compiled ops unavailable; use PIL image processors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
