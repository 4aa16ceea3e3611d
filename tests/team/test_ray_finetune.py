"""A multi-node fine-tune is one command (#21 §2): `workflow run vlm-finetune ... --num_nodes 2` on the
session's 2-node loopback Ray cluster — a Ray Train gang of per-node `accelerate launch`es, gloo on CPU —
in team mode: PostgreSQL for the metadata and catalog, the SeaweedFS S3 server for the warehouse.

One training pair for the whole file (suite time): a 2-node run whose node-1 worker is SIGKILLed once its
first checkpoint is in S3 (the run fails with the reason), and its `workflow resume` — with the local
checkpoints deleted, so it can only continue from the uploaded one — which trains on both nodes to the end
and registers the adapter in S3 (rank 0); a second MIXTRAIN_HOME, sharing only PostgreSQL + S3, runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from PIL import Image

from harness import Mix, cli_env, colour_dataset, finetune_args, wait_for

STEPS = 40  # long enough that the kill, made once a checkpoint is in S3, lands mid-training (10 finished first on a quiet machine)
MANIFEST = ".mixtrain-manifest.json"


@pytest.mark.e2e
@pytest.mark.postgres
def test_two_node_finetune_on_s3_killed_node_fails_the_run_and_resume_continues_from_the_s3_checkpoint(
    tmp_path, ray_cluster, tiny_models, pg_url, s3_server, s3_env
):
    shared = {"MIXTRAIN_DATABASE_URL": pg_url, "MIXTRAIN_CATALOG_URL": pg_url, **s3_env}
    team = Mix(tmp_path, tmp_path / "a", cli_env(tmp_path / "a", **shared))
    team.env["MIXTRAIN_RAY_ADDRESS"] = ray_cluster.dashboard_url
    team.register_finetune()
    colour_dataset(team, "gang-colours", n=8)
    args = [
        "--dataset_name", "gang-colours", "--output_model_name", "gang-llava", "--base_model", tiny_models["llava"],
        *finetune_args(steps=STEPS, batch_size=1, max_seq_length=256), "--save_steps", "4",
    ]  # fmt: skip
    team("workflow", "run", "vlm-finetune", *args, "--num_nodes", "2", "-d", check=0)
    run = team.last_run()
    assert run["placement"]["num_nodes"] == 2
    fs, warehouse = s3_server.filesystem(), s3_env["MIXTRAIN_WAREHOUSE"]
    uploads = f"{warehouse}/runs/{run['id']}/checkpoints"

    def uploaded() -> list[int]:
        """Steps of the checkpoints whose upload finished (manifest written last)."""
        from pyarrow.fs import FileSelector

        key = uploads[len("s3://") :]
        infos = fs.get_file_info(FileSelector(key, recursive=True, allow_not_found=True))
        return sorted(int(m.group(1)) for i in infos if (m := re.search(rf"checkpoint-(\d+)/{MANIFEST}$", i.path)))

    started = wait_for(
        lambda: re.search(r"node 1 of 2: Ray node (\w+), worker pid (\d+)", team.run_log(number=run["number"])),
        600,
        "node 1's worker to start",
        0.5,
    )
    wait_for(uploaded, 600, "a checkpoint uploaded to S3", 0.05)
    os.kill(int(started.group(2)), signal.SIGKILL)  # node 1's Ray Train worker, mid-training
    wait_for(lambda: team.last_run()["status"] != "running", 300, "the run to fail", 0.5)
    killed = team.last_run()
    assert killed["status"] == "failed" and "2-node training failed" in killed["error"], killed
    steps = uploaded()
    assert steps and steps[-1] < STEPS, steps  # killed mid-training
    log = team.run_log(number=run["number"])
    fetched = re.findall(rf"node (\d) of 2: inputs from {re.escape(warehouse)}/runs/{run['id']}/inputs", log)
    assert set(fetched) == {"0", "1"}, log[-3000:]  # each worker fetched the run's inputs from S3
    output_dir = Path(json.loads((Path(run["run_dir"]) / "checkpoints.json").read_text())["output_dir"])
    shutil.rmtree(output_dir)  # the local checkpoints are gone: resume can only continue from S3

    res = team("workflow", "resume", "vlm-finetune", str(run["number"]), check=0)
    resumed = team.last_run()
    assert resumed["status"] == "completed" and resumed["placement"]["num_nodes"] == 2, res.stderr
    origin = resumed["resumed_from"]
    assert origin["run"] == run["number"] and origin["step"] == steps[-1]
    assert origin["checkpoint"] == f"{uploads}/checkpoint-{steps[-1]}"
    log = team.run_log(number=resumed["number"])
    assert f"checkpoint {origin['checkpoint']} downloaded to" in log
    assert f"trained output uploaded to {warehouse}/runs/{resumed['id']}/output" in log  # by rank 0, for the run
    done = re.findall(r"node (\d) of 2 \(rank (\d) of 2\) finished — Ray node (\w+)", log)
    assert sorted((n, r) for n, r, _ in done) == [("0", "0"), ("1", "1")], log[-3000:]
    assert {node for *_, node in done} == {n[:12] for n in ray_cluster.node_ids}  # one worker on each Ray node
    info = team.json("model", "get", "gang-llava")
    assert info["lineage"]["global_step"] == STEPS and info["lineage"]["resumed_from"]["run"] == run["number"]
    assert info["adapter_path"].startswith(f"{warehouse}/models/gang-llava/")  # rank 0 registered it in S3
    rows = team.json("workflow", "metrics", "vlm-finetune", str(resumed["number"]))
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # rank 0 recorded each step once

    # A second machine: its own MIXTRAIN_HOME, nothing shared but PostgreSQL + S3.
    other = Mix(tmp_path, tmp_path / "b", cli_env(tmp_path / "b", **shared))
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "blue.png")
    inputs = json.dumps({"image": str(tmp_path / "blue.png"), "prompt": "What colour?"})
    r = other("model", "run", "gang-llava", "--inputs", inputs, "--config", '{"max_new_tokens": 4}', "--json", check=0)
    assert json.loads(r.stdout)["model"] == "gang-llava"
    assert any((tmp_path / "b" / "cache" / "artifacts").iterdir())  # downloaded into its own cache
