"""Runs you can watch, reproduce and resume — real CLI, real runner, real Axolotl on a tiny Qwen2-VL.

Short trainings with the same inputs: A (attached: the compact view, recorded metrics), C (same seed,
SIGKILLed after its first checkpoint: its steps so far equal A's) and its resume D (ends at A's step with
A's losses, no gap, no duplicate step); E adds an eval dataset (it trains beside A, two at a time).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from harness import Mix, colour_dataset, prefetch, wait_for
from harness.parallel import run_all, run_number

STEPS = 24
ARGS = [
    "--dataset_name",
    "runs-colours",
    "--model_type",
    "qwen2_vl",
    "--max_steps",
    str(STEPS),
    "--save_steps",
    "4",
    "--num_epochs",
    "4",
    "--batch_size",
    "2",
    "--gradient_accumulation_steps",
    "1",
    "--learning_rate",
    "0.001",
    "--lora_r",
    "8",
    "--lora_dropout",
    "0.1",
    "--max_seq_length",
    "256",
]


@prefetch.job("runs_trained", needs=("tiny_models",))
def _runs_trained(tmp) -> dict:
    """Run A, attached, as a user would; its output and metrics. Run E (A's inputs plus an eval dataset)
    trains beside it, at the same time (two independent runs in one home), and is checked by its own test.
    Started early in the background when these tests are selected (harness/prefetch.py)."""
    e2e = prefetch.mix(tmp.mktemp("runs"))
    e2e.register_finetune()
    colour_dataset(e2e, "runs-colours")
    colour_dataset(e2e, "runs-eval", n=4)
    base = ["--base_model", str(prefetch.result("tiny_models", tmp)["qwen2_vl"])]
    a, e = run_all(
        [
            lambda: e2e.mix("workflow", "run", "vlm-finetune", *ARGS, *base, "--output_model_name", "runs-a", check=0),
            lambda: e2e.mix(
                "workflow",
                "run",
                "vlm-finetune",
                *ARGS[ARGS.index("--model_type") :],
                *base,
                "--dataset_name",
                "runs-colours",
                "--output_model_name",
                "runs-e",
                "--eval_dataset_name",
                "runs-eval",
                "--eval_steps",
                "8",
                check=0,
            ),
        ]
    )
    number = run_number(a.stdout)
    run = next(r for r in e2e.json("workflow", "runs", "vlm-finetune") if r["number"] == number)
    return {
        "env": e2e,
        "out": a.stdout,
        "err": a.stderr,
        "run": run,
        "base": base,
        "metrics": e2e.json("workflow", "metrics", "vlm-finetune", str(number)),
        "eval_run": run_number(e.stdout),
    }


@pytest.fixture(scope="module")
def runs_trained(tmp_path_factory, tiny_models) -> dict:
    return prefetch.result("runs_trained", tmp_path_factory)


@pytest.fixture(scope="module")
def trained(runs_trained) -> dict:
    return runs_trained


@pytest.fixture(scope="module")
def e2e(trained) -> Mix:
    """This module's home: the one runs A and E trained in (C and its resume D follow them there)."""
    return trained["env"]


def losses(rows):
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


@pytest.mark.e2e
def test_attached_run_is_compact_and_every_step_is_recorded(e2e, trained):
    out = trained["out"]
    assert len(out.splitlines()) < 30, out
    assert (
        "● read dataset runs-colours: 16 rows" in out and "● verify images: 16 usable" in out and "● configure:" in out
    )
    assert "● load model and data: 24 steps to train" in out and f"● train: {STEPS} steps" in out
    assert f"  step {STEPS}/{STEPS} (100%)" in out and "loss" in out
    assert "'loss'" not in out and "[INFO]" not in out  # the trainer's stream is not in the terminal...
    log = e2e.run_log(number=trained["run"]["number"])
    assert "'loss'" in log and "Model successfully saved" in log  # ...but all of it is in the run log

    rows = trained["metrics"]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(
        isinstance(r["loss"], float) and r["learning_rate"] > 0 and "grad_norm" in r and r["epoch"] > 0 for r in rows
    )
    from unittest import mock

    from mixtrain.client import MixClient
    from mixtrain.settings import load_settings

    with mock.patch.dict(os.environ, {"MIXTRAIN_HOME": str(e2e.home)}):
        assert MixClient(load_settings()).get_run_metrics("vlm-finetune", trained["run"]["number"]) == rows
    # What training took beside what the preflight estimated (on CPU: the growth of peak resident memory).
    memory = json.loads((Path(trained["run"]["run_dir"]) / "preflight.json").read_text())["memory"]
    assert memory["measured_gib"] > 0 and memory["measured"] == "growth of peak resident memory (CPU)"
    assert f"● memory: estimated {memory['total_gib']:.3f} GiB, measured {memory['measured_gib']:.3f} GiB" in out
    lineage = e2e.json("model", "get", "runs-a")["lineage"]
    assert lineage["seed"] == 42 and lineage["resumed_from"] is None and lineage["global_step"] == STEPS


@pytest.mark.e2e
def test_kill_after_a_checkpoint_then_resume_matches_the_uninterrupted_run(e2e, trained):
    """Run C: A's inputs and seed, detached, SIGKILLed after checkpoint-4; its resume D.

    Also the reproducibility check (it was a separate full run B): C's own steps before the kill equal A's
    bit for bit (LoRA dropout 0.1 included), and D's whole series does too."""
    e2e.mix("workflow", "run", "vlm-finetune", *ARGS, *trained["base"], "--output_model_name", "runs-c", "-d", check=0)
    run = e2e.last_run()
    run_dir = Path(run["run_dir"])
    wait_for(lambda: (run_dir / "checkpoints.json").is_file(), 600, "checkpoints.json", 0.02)
    output_dir = Path(json.loads((run_dir / "checkpoints.json").read_text())["output_dir"])
    wait_for(lambda: (output_dir / "checkpoint-4" / "trainer_state.json").is_file(), 600, "checkpoint-4", 0.02)
    trainer = _trainer_pid(e2e.last_run()["worker_pid"])
    os.kill(trainer, signal.SIGKILL)
    _wait(e2e, run["number"])
    killed = e2e.last_run()
    assert killed["status"] == "failed" and "code -9" in killed["error"], killed
    before_kill = e2e.json("workflow", "metrics", "vlm-finetune", str(run["number"]))
    assert len(losses(before_kill)) >= 4, before_kill  # it trained past checkpoint-4 before the kill
    assert losses(before_kill) == losses(trained["metrics"])[: len(losses(before_kill))]  # same inputs + seed
    runs_table = e2e.mix("workflow", "runs", "vlm-finetune", check=0).stdout
    assert f"#{run['number']}" in runs_table and "failed" in runs_table
    kept = sorted(p.name for p in output_dir.iterdir())
    assert kept and all(k.startswith("checkpoint-") for k in kept), kept  # checkpoints kept, nothing else
    assert int(kept[-1].split("-")[1]) < STEPS  # killed before the end

    res = e2e.mix("workflow", "resume", "vlm-finetune", str(run["number"]), check=0)
    assert "● resume run #" in res.stdout and "(resumed)" in res.stdout
    resumed = e2e.last_run()
    step = resumed["resumed_from"]["step"]
    assert (
        resumed["status"] == "completed"
        and resumed["resumed_from"]["run"] == run["number"]
        and step >= 4
        and step % 4 == 0
    )
    rows = e2e.json("workflow", "metrics", "vlm-finetune", str(resumed["number"]))
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # no gap, no duplicate
    assert losses(rows) == losses(trained["metrics"])  # same data order, optimizer, scheduler and RNG state
    info = e2e.json("model", "get", "runs-c")
    assert info["lineage"]["resumed_from"] == {"run": run["number"], "step": step}
    assert info["lineage"]["global_step"] == STEPS

    again = e2e.mix("workflow", "resume", "vlm-finetune", str(resumed["number"]), check=1)
    assert again.stderr.startswith("Error: run #") and "completed; there is nothing to resume" in again.stderr
    assert "not found" in e2e.mix("workflow", "resume", "vlm-finetune", "99", check=1).stderr
    assert "not found" in e2e.mix("workflow", "resume", "no-such-flow", "1", check=1).stderr


def _wait(e2e, number):
    wait_for(
        lambda: e2e.json("workflow", "runs", "vlm-finetune", "-n", "1")[0]["status"] not in ("pending", "running"),
        600,
        f"run #{number} to end",
    )


def _trainer_pid(worker: int) -> int:
    """The training process: the worker's child running our Axolotl entry."""
    for task in os.listdir(f"/proc/{worker}/task"):
        for child in Path(f"/proc/{worker}/task/{task}/children").read_text().split():
            if b"mixtrain.vlm.axolotl_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("no training process found")


@pytest.mark.e2e
def test_eval_loss_on_a_separate_dataset_is_recorded_and_in_the_lineage(e2e, trained):
    """Run E (trained by the fixture, beside A)."""
    rows = e2e.json("workflow", "metrics", "vlm-finetune", str(trained["eval_run"]))
    evals = [r["step"] for r in rows if "eval_loss" in r]
    assert evals == [0, 8, 16, 24], evals  # Axolotl evaluates once before the first step: the baseline
    info = e2e.json("model", "get", "runs-e")
    assert info["lineage"]["eval_loss"] == next(r["eval_loss"] for r in reversed(rows) if "eval_loss" in r)
    assert info["lineage"]["eval"]["source"] == "dataset" and info["lineage"]["eval"]["rows"] == 4
    assert "eval loss:" in e2e.mix("model", "get", "runs-e", check=0).stdout
