"""An eval on the Ray cluster (#21 §2: "evals and other workflows run on the cluster the same way"): with
MIXTRAIN_RAY_ADDRESS set, `eval create` is a Ray job of one worker, scored and stored like a local eval.

Loads a tiny model (no training: the random tiny LoRA of ``mixtrain.testing`` on the session's tiny
LLaVA): run it under `flock /tmp/mixtrain-train.lock` like every test that loads one."""

from __future__ import annotations

import csv
import subprocess
import sys

from PIL import Image

from harness import Mix

REGISTER = """
import sys
from mixtrain.client import MixClient
from mixtrain.testing.tiny_lora import make_tiny_lora
out, base = sys.argv[1:3]
adapter = make_tiny_lora(base, out, seed=1)
MixClient().models.register("colour", base_model=base, model_type="llava", train_loss=None, lineage={},
                            adapter_path=str(adapter))
"""


def test_eval_create_runs_as_a_ray_job_and_stores_its_scores(tmp_path, ray_cluster, tiny_models):
    team = Mix(tmp_path)
    team.env["MIXTRAIN_RAY_ADDRESS"] = ray_cluster.dashboard_url
    proc = subprocess.run(
        [sys.executable, "-c", REGISTER, str(tmp_path / "lora"), str(tiny_models["llava"])],
        env=team.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = []
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{colour}.png")
        rows.append({"image_path": str(tmp_path / f"{colour}.png"), "prompt": f"Colour {i}?", "response": colour})
    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    team("dataset", "create", "colours", "--file", tmp_path / "d.csv", check=0)

    out = team("eval", "create", "on-ray", "--dataset", "colours", "--models", "colour", "-c", '{"max_new_tokens": 3}')
    assert out.returncode == 0, out.stderr
    rec = team.json("eval", "get", "on-ray")
    assert rec["status"] == "completed", rec.get("error")
    (score,) = rec["scores"].values()
    assert score["n"] == 3 and score["failed"] == 0 and 0.0 <= score["mean"] <= 1.0
    # It ran on the cluster: the eval's run is a Ray job of this cluster, and the job finished.
    (run,) = [r for r in team.json("workflow", "runs", rec["run"]["workflow"]) if r["number"] == rec["run"]["number"]]
    place = run["placement"]
    assert place["backend"] == "ray" and place["address"] == ray_cluster.dashboard_url
    assert run["status"] == "completed"
