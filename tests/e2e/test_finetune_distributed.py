"""The distributed path (accelerate launch, two processes, gloo on loopback) — the code a cluster node runs."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from harness import colour_dataset, prefetch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@prefetch.job("ddp_home", needs=("tiny_models",))
def _ddp_home(tmp):
    """The two-process training, in a home of its own (started early in the background, harness/prefetch.py)."""
    e2e = prefetch.mix(tmp.mktemp("ddp"))
    e2e.register_finetune()
    tiny_models = prefetch.result("tiny_models", tmp)
    colour_dataset(e2e, "ddp-shapes", n=8)
    port = _free_port()
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    e2e.mix(
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "ddp-shapes",
        "--output_model_name",
        "ddp-llava",
        "--base_model",
        tiny_models["llava"],
        "--num_processes",
        "2",
        "--num_epochs",
        "1",
        "--batch_size",
        "1",
        "--gradient_accumulation_steps",
        "1",
        "--max_steps",
        "2",
        "--max_seq_length",
        "256",
        env=env,
        check=0,
    )
    return e2e


@pytest.fixture(scope="module")
def ddp_home(tmp_path_factory, tiny_models):
    return prefetch.result("ddp_home", tmp_path_factory)


@pytest.mark.e2e
def test_two_process_ddp_on_loopback(ddp_home):
    e2e = ddp_home
    log = e2e.run_log()
    assert "🌐 Detected distributed environment - using accelerate launch" in log
    assert "MASTER_ADDR: 127.0.0.1" in log and "WORLD_SIZE: 1" in log
    # Both training processes ran to the end (the single-process path prints "rank 0 of 1" only).
    assert "mixtrain: training process rank 0 of 2 finished" in log, log[-3000:]
    assert "mixtrain: training process rank 1 of 2 finished" in log, log[-3000:]
    # The preflight ran once (the node's first process); the other process waited for that very request's verdict.
    assert log.count("● preflight: 8 rows through the processor") == 1, log[-3000:]
    run_dir = Path(e2e.last_run()["run_dir"])
    verdict = json.loads((run_dir / "preflight.json").read_text())
    assert verdict["request_id"] == json.loads((run_dir / "preflight_request.json").read_text())["id"]
    assert "memory" in verdict and "error" not in verdict
    info = e2e.json("model", "get", "ddp-llava")
    assert info["lineage"]["global_step"] == 2
    # Both ranks log; only rank 0 records, so each step is in the DB once.
    rows = e2e.json("workflow", "metrics", "vlm-finetune", str(e2e.last_run()["number"]))
    assert [r["step"] for r in rows] == [1, 2] and all("loss" in r for r in rows)
