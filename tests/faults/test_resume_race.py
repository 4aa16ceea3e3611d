"""#20 §3: two concurrent `workflow resume` of one run — the database lets exactly one start; the other
is refused with Conflict naming the run that is resuming it. Real processes released by a barrier."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import pytest
from fault_helpers import clean_error

# A workflow with its own checkpoint shape (not the HF Trainer's): the engine learns it from the
# declaration. The first run checkpoints at step 5 and fails; a resumed run takes a while, then ends.
FLOW = """
import json, os, time
from pathlib import Path
from mixtrain import MixFlow
from mixtrain.workflows.runfolder import CheckpointLayout, RunFolder

LAYOUT = CheckpointLayout(files=("w.bin", "state.json"), state_file="state.json", step_key="step", prefix="ck-")

class Ckpt(MixFlow):
    def run(self, steps: int = 5):
        ctx = self.run_context
        if os.environ.get("MIXTRAIN_RUN_NUMBER") != "1":
            time.sleep(4)  # long enough that a second resume arrives while this one is active
            return "resumed"
        out = ctx.run_dir / "out"
        (out / "ck-5").mkdir(parents=True)
        (out / "ck-5" / "w.bin").write_bytes(b"w")
        (out / "ck-5" / "state.json").write_text(json.dumps({"step": 5}))
        RunFolder(ctx.run_dir).declare_checkpoints(out, LAYOUT, note="mine")
        raise RuntimeError("crashed after step 5")
"""


def _resume(env: dict, barrier, out) -> None:
    os.environ.update(env)
    from mixtrain.client import MixClient
    from mixtrain.errors import MixtrainError

    client = MixClient()
    barrier.wait()
    try:
        run = client.resume_run("ckpt", 1, detach=True)
        out.put(("ok", run["number"]))
    except MixtrainError as exc:
        out.put((type(exc).__name__, str(exc)))


@pytest.mark.parametrize("procs", [2, 4])
def test_concurrent_resumes_of_one_run_start_one(fmix, procs):
    (fmix.root / "ckpt.py").write_text(FLOW)
    fmix("workflow", "create", str(fmix.root / "ckpt.py"), "--name", "ckpt", check=0)
    fmix("workflow", "run", "ckpt", check=1)
    ctx = mp.get_context("spawn")  # fresh interpreters: no engine or lock shared with pytest
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    env = {k: v for k, v in fmix.env.items() if k.startswith(("MIXTRAIN_", "PYTHON", "HF_", "PATH"))}
    ps = [ctx.Process(target=_resume, args=(env, barrier, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    got = [out.get(timeout=120) for _ in ps]
    for p in ps:
        p.join(timeout=60)
    winners = [g for g in got if g[0] == "ok"]
    assert len(winners) == 1, got
    number = winners[0][1]
    for kind, msg in (g for g in got if g[0] != "ok"):
        assert kind == "Conflict" and f"already being resumed by run #{number}" in msg, (kind, msg)
    # the CLI says the same while the resume runs
    clean_error(fmix("workflow", "resume", "ckpt", "1"), f"already being resumed by run #{number}")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        rows = json.loads(fmix("workflow", "runs", "ckpt", "--json", check=0).stdout)
        if all(r["status"] not in ("pending", "running") for r in rows):
            break
        time.sleep(0.3)
    rows = json.loads(fmix("workflow", "runs", "ckpt", "--json", check=0).stdout)
    resumed = [r for r in rows if r["resumed_from"]]
    assert len(resumed) == 1 and resumed[0]["status"] == "completed", rows
    assert resumed[0]["resumed_from"] == {
        "run": 1,
        "step": 5,
        "checkpoint": str(fmix.home / "runs/ckpt/1/out/ck-5"),
        "note": "mine",
    }
    # once that resume has ended, run #1 may be resumed again (the constraint holds only while one is active)
    assert fmix("workflow", "resume", "ckpt", "1", "-d").returncode == 0
