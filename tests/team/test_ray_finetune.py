"""A multi-node fine-tune is one command (#21 §2): `workflow run vlm-finetune ... --num_nodes 2` on the
session's 2-node loopback Ray cluster — a Ray Train gang of per-node `accelerate launch`es, gloo on CPU.

One training pair for the whole file (suite time): a 2-node run whose node-1 worker is SIGKILLed after
its first checkpoint (the run fails with the reason), and its `workflow resume`, which trains on both
nodes to the end and registers the adapter (rank 0).
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from harness import Mix, colour_dataset, finetune_args, wait_for

STEPS = 10


@pytest.mark.e2e
def test_two_node_finetune_killed_node_fails_the_run_and_resume_finishes_on_both_nodes(
    tmp_path, ray_cluster, tiny_models
):
    team = Mix(tmp_path)
    team.env["MIXTRAIN_RAY_ADDRESS"] = ray_cluster.dashboard_url
    team.register_finetune()
    colour_dataset(team, "gang-colours", n=8)
    args = [
        "--dataset_name", "gang-colours", "--output_model_name", "gang-llava", "--base_model", tiny_models["llava"],
        *finetune_args(steps=STEPS, batch_size=1, max_seq_length=256), "--save_steps", "2",
    ]  # fmt: skip
    team("workflow", "run", "vlm-finetune", *args, "--num_nodes", "2", "-d", check=0)
    run = team.last_run()
    assert run["placement"]["num_nodes"] == 2
    run_dir = Path(run["run_dir"])  # the loopback cluster shares this machine's disk (object store: team-s3)
    started = wait_for(
        lambda: re.search(r"node 1 of 2: Ray node (\w+), worker pid (\d+)", team.run_log(number=run["number"])),
        600,
        "node 1's worker to start",
        0.5,
    )
    output_dir = Path(json.loads((run_dir / "checkpoints.json").read_text())["output_dir"])
    wait_for(lambda: (output_dir / "checkpoint-2" / "trainer_state.json").is_file(), 600, "checkpoint-2", 0.02)
    os.kill(int(started.group(2)), signal.SIGKILL)  # node 1's Ray Train worker, mid-training
    wait_for(lambda: team.last_run()["status"] != "running", 300, "the run to fail", 0.5)
    killed = team.last_run()
    assert killed["status"] == "failed" and "2-node training failed" in killed["error"], killed
    kept = sorted(p.name for p in output_dir.iterdir())
    steps = [int(k.split("-")[1]) for k in kept if k.startswith("checkpoint-")]
    assert steps and max(steps) < STEPS, kept  # killed mid-training: its checkpoints kept, not trained to the end

    res = team("workflow", "resume", "vlm-finetune", str(run["number"]), check=0)
    resumed = team.last_run()
    assert resumed["status"] == "completed" and resumed["placement"]["num_nodes"] == 2, res.stderr
    assert resumed["resumed_from"]["run"] == run["number"] and resumed["resumed_from"]["step"] >= 2
    log = team.run_log(number=resumed["number"])
    done = re.findall(r"node (\d) of 2 \(rank (\d) of 2\) finished — Ray node (\w+)", log)
    assert sorted((n, r) for n, r, _ in done) == [("0", "0"), ("1", "1")], log[-3000:]
    assert {node for *_, node in done} == {n[:12] for n in ray_cluster.node_ids}  # one worker on each Ray node
    info = team.json("model", "get", "gang-llava")
    assert info["lineage"]["global_step"] == STEPS and info["lineage"]["resumed_from"]["run"] == run["number"]
    rows = team.json("workflow", "metrics", "vlm-finetune", str(resumed["number"]))
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # rank 0 recorded each step once
