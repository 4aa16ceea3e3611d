"""benchmarks/bench_gpu.py --tiny: the GPU benchmark's whole path runs on CPU, so it works the day a GPU is lent.

Run by `make bench` where there is no CUDA (in place of a bare `bench_gpu.py --tiny`), not by `make test`:
it is a benchmark's check, and two real trainings per family are too slow for the test suite.

Why: the GPU benchmark cannot run here, and a script that first runs on a lent machine with minutes of
budget must not fail on a typo. This runs both sides for real at tiny size (mixtrain workflow run with
Axolotl, plain TRL SFTTrainer + peft), 2 steps each, and checks that both trained the asked number of
steps with the same settings, and that the figures it prints are the ones it measured. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("family", ["llava"])
def test_bench_gpu_tiny_runs_both_sides_with_the_same_settings(tmp_path, family):
    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_gpu.py"),
            "--tiny",
            "--family",
            family,
            "--json-out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (r,) = json.loads(out.read_text())["results"]
    a, b = r["mixtrain"], r["trl"]
    assert a["steps"] == b["steps"] == 2  # both sides trained exactly --steps (tiny default)
    assert r["settings_mismatch"] == {}, r["settings_mismatch"]  # TRL ran with A's LoRA/optimizer/batch settings
    assert b["settings"]["lora_r"] == 64 and b["settings"]["micro_batch_size"] == 2
    assert a["samples_per_s"] > 0 and b["samples_per_s"] > 0 and r["tokens_per_sample"] > 32
    assert a["peak_gib"] is None and a["mfu"] is None  # no GPU here: not invented
    ratio = f"samples/s {a['samples_per_s'] / b['samples_per_s']:.3f}"
    assert ratio in proc.stdout  # the printed ratio is the measured one
    print(proc.stdout)  # the benchmark's report (make bench runs this with -s)
