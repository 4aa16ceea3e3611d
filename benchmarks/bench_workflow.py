"""What the workflow engine adds to a run, side by side with the raw baseline in the same run.

    .venv/bin/python benchmarks/bench_workflow.py [--reps 7]

A trivial workflow is timed three ways, interleaved, each in a fresh process:
  ours      ``mixtrain workflow run triv --x 1`` (foreground: returns when the run has completed)
  raw       ``python -c`` that imports the file and calls ``Triv().run(x=1)`` (plain instantiation)
  raw+sdk   ``python -c`` that imports the file and calls it through ``mixtrain.workflows.worker.call_flow``
Medians and the seconds ours adds over raw are printed (target <= 0.5 s), with a breakdown of where
our time goes from the run's own timestamps. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import MIXTRAIN
from common import timed as _timed

FLOW = '''
from mixtrain import MixFlow


class Triv(MixFlow):
    """Adds one."""

    def run(self, x: int = 1):
        return x + 1
'''

RAW = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("triv", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
assert mod.Triv().run(x=1) == 2
"""

RAW_SDK = """
import sys
from mixtrain.workflows.loader import find_flow, load_module
from mixtrain.workflows.worker import call_flow
cls = find_flow(load_module(sys.argv[1]))
spec = {"inputs": [{"name": "x", "style": "run"}]}
assert call_flow(cls, spec, {"x": 1}) == 2
"""


def timed(cmd, env, cwd) -> float:
    return _timed(cmd, env, cwd)[0]


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mixtrain-bench-wf-"))
    try:
        flow = tmp / "triv.py"
        flow.write_text(FLOW)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIXTRAIN_")}
        env["MIXTRAIN_HOME"] = str(tmp / "home")
        timed([MIXTRAIN, "workflow", "create", str(flow), "--name", "triv"], env, tmp)
        timed([MIXTRAIN, "workflow", "run", "triv", "--x", "1"], env, tmp)  # warm the page cache once, untimed

        ours, raw, sdk, marks = [], [], [], []
        for rep in range(args.reps):
            t_start = time.time()
            ours.append(timed([MIXTRAIN, "workflow", "run", "triv", "--x", "1"], env, tmp))
            t_end = time.time()
            marks.append((t_start, t_end))
            raw.append(timed([sys.executable, "-c", RAW, str(flow)], env, tmp))
            sdk.append(timed([sys.executable, "-c", RAW_SDK, str(flow)], env, tmp))
            print(f"  rep {rep + 1}: ours {ours[-1]:.3f} s   raw {raw[-1]:.3f} s   raw+sdk {sdk[-1]:.3f} s")

        runs = json.loads(
            subprocess.run(
                [MIXTRAIN, "workflow", "runs", "triv", "-n", str(args.reps), "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        runs = sorted(runs, key=lambda r: r["number"])[-args.reps :]
        assert all(r["status"] == "completed" and r["output"] == 2 for r in runs), runs
        phases = {
            "CLI start-up → run inserted": [],
            "supervisor start → worker running": [],
            "worker: import file, run(), report": [],
            "result → CLI exit (follow, close)": [],
        }
        for (t0, t1), r in zip(marks, runs, strict=False):
            created, started, finished = ts(r["created_at"]), ts(r["started_at"]), ts(r["finished_at"])
            phases["CLI start-up → run inserted"].append(created - t0)
            phases["supervisor start → worker running"].append(started - created)
            phases["worker: import file, run(), report"].append(finished - started)
            phases["result → CLI exit (follow, close)"].append(t1 - finished)

        m_ours, m_raw, m_sdk = statistics.median(ours), statistics.median(raw), statistics.median(sdk)
        print("\n| trivial run, fresh process each           | median s |")
        print("|-------------------------------------------|----------|")
        print(f"| mixtrain workflow run (foreground)        | {m_ours:8.3f} |")
        print(f"| raw: import file + Triv().run()           | {m_raw:8.3f} |")
        print(f"| raw+sdk: import file + call_flow()        | {m_sdk:8.3f} |")
        print("\n| where `workflow run` spends it (median)   | s        |")
        print("|-------------------------------------------|----------|")
        for name, values in phases.items():
            print(f"| {name:<42}| {statistics.median(values):8.3f} |")
        added = m_ours - m_raw
        print(
            f"\nadded over raw = {added:.3f} s (target <= 0.5 s: {'met' if added <= 0.5 else 'MISSED'}); "
            f"over raw+sdk = {m_ours - m_sdk:.3f} s; ratio ours/raw = {m_ours / m_raw:.1f}x"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
