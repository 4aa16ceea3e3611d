"""Evals on real tiny models through the real CLI and run engine.

Two families in one eval; the eval's batched greedy outputs equal one-at-a-time generation and a
re-run; a broken image fails its row, not the eval; the results dataset has the agreed columns; an
eval can be cancelled, and a SIGKILLed one is failed with the reason instead of staying `running`.
"""

from __future__ import annotations

import csv
import os
import signal
import time

import pytest

from harness import prefetch, wait_for
from mixtrain.testing.colour_task import make_task

GEN = '{"max_new_tokens": 6}'


@prefetch.job("eval_setup", needs=("tiny_models",))
def _eval_setup(tmp) -> dict:
    """The module's home, its eval set, two base models and the first eval — started early in the background
    when these tests are selected (harness/prefetch.py)."""
    e2e = prefetch.mix(tmp.mktemp("evals"))
    e2e.register_finetune()  # as the shared e2e home has it
    tiny_models = prefetch.result("tiny_models", tmp)
    task = make_task(e2e.root / "evaltask", n_train=6, n_test=12, size=48, seed=3)
    with open(task["test_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    rows.insert(
        5, {"image_path": str(e2e.root / "missing.png"), "prompt": "What colour is the shape?", "response": "red"}
    )
    path = e2e.root / "evalset.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image_path", "prompt", "response"])
        w.writeheader()
        w.writerows(rows)
    e2e.mix("dataset", "create", "evalset", "--file", path, check=0)
    e2e.mix("model", "register", "llava-base", "--base_model", tiny_models["llava"], "--model_type", "llava", check=0)
    e2e.mix(
        "model", "register", "qwen-base", "--base_model", tiny_models["qwen2_vl"], "--model_type", "qwen2_vl", check=0
    )
    proc = e2e.mix(
        "eval",
        "create",
        "cmp",
        "--dataset",
        "evalset",
        "--models",
        "llava-base,qwen-base",
        "--metric",
        "contains",
        "--config",
        GEN,
        "--batch_size",
        "4",
        check=0,
    )
    return {"rows": rows, "stdout": proc.stdout, "env": e2e}


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory, tiny_models) -> dict:
    return prefetch.result("eval_setup", tmp_path_factory)


@pytest.fixture(scope="module")
def e2e(eval_setup):
    """This module's home (the one the background job set up)."""
    return eval_setup["env"]


@pytest.fixture(scope="module")
def setup(eval_setup) -> dict:
    return eval_setup


@pytest.mark.e2e
def test_eval_two_families_side_by_side(e2e, setup):
    rec = e2e.json("eval", "get", "cmp")
    assert rec["status"] == "completed", rec["error"]
    assert [m["label"] for m in rec["models"]] == ["llava-base_v1", "qwen-base_v1"]
    assert rec["config"]["generation"]["max_new_tokens"] == 6 and rec["config"]["generation"]["do_sample"] is False
    assert rec["snapshot_id"] is not None and rec["dataset"] == "evalset"
    for lab, s in rec["scores"].items():
        assert (s["n"], s["failed"]) == (12, 1), lab
        assert 0.0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 1.0
        assert s["generation_s"] > 0
        assert s["failures"][0]["row_id"] == 5 and "not found" in s["failures"][0]["reason"]
    cmp = rec["comparison"]
    assert (cmp["a"], cmp["b"], cmp["n"]) == ("llava-base_v1", "qwen-base_v1", 12) and 0 < cmp["p_value"] <= 1
    # the foreground create streamed progress and ended with the side-by-side table
    assert "rows/s" in setup["stdout"] and "ETA" in setup["stdout"] and "paired bootstrap p" in setup["stdout"]


@pytest.mark.e2e
def test_results_match_one_at_a_time_and_rerun(e2e, setup, monkeypatch):
    results = e2e.json("eval", "results", "cmp", "--limit", "100")
    assert [r["row_id"] for r in results] == list(range(13))
    assert [r["reference"] for r in results] == [r["response"] for r in setup["rows"]]
    assert results[5]["llava-base_v1__output"] is None and results[5]["llava-base_v1__score"] is None

    from mixtrain.client import MixClient, get_eval
    from mixtrain.settings import load_settings

    monkeypatch.setenv("MIXTRAIN_HOME", str(e2e.home))
    client = MixClient(load_settings())
    table = get_eval("cmp", client=client).results().to_pandas().sort_values("row_id")
    assert list(table.columns) == [
        "row_id",
        "image",
        "prompt",
        "reference",
        "llava-base_v1__output",
        "llava-base_v1__score",
        "qwen-base_v1__output",
        "qwen-base_v1__score",
    ]
    from mixtrain.models.inference import LoadedModel

    for name, lab in (("llava-base", "llava-base_v1"), ("qwen-base", "qwen-base_v1")):
        model = LoadedModel(client.get_model_info(name), client.settings)
        one = [
            model.run({"image": r["image"], "prompt": r["prompt"]}, max_new_tokens=6)["generated_text"]
            for r in results
            if r[lab + "__output"] is not None
        ]
        assert [r[lab + "__output"] for r in results if r[lab + "__output"] is not None] == one, lab
        del model

    e2e.mix(
        "eval",
        "create",
        "cmp-again",
        "--dataset",
        "evalset",
        "--models",
        "qwen-base,llava-base",
        "--metric",
        "contains",
        "--config",
        GEN,
        "--batch_size",
        "5",
        check=0,
    )
    again = {r["row_id"]: r for r in e2e.json("eval", "results", "cmp-again", "--limit", "100")}
    for r in results:
        assert again[r["row_id"]]["qwen-base_v1__output"] == r["qwen-base_v1__output"]
        assert again[r["row_id"]]["llava-base_v1__output"] == r["llava-base_v1__output"]
    listed = e2e.json("model", "get", "qwen-base")["evals"]
    assert [e["eval"] for e in listed] == ["cmp", "cmp-again"]


def _wait_running(e2e, name: str) -> dict:
    # generating ("rows/s" in its log): past the model load
    wait_for(lambda: "rows/s" in e2e.mix("eval", "logs", name).stdout, 300, f"eval {name} to start generating", 0.5)
    return e2e.json("eval", "get", name)


@pytest.mark.e2e
def test_cancel_and_sigkill_never_leave_an_eval_running(e2e, setup):
    slow = [
        "--dataset",
        "evalset",
        "--models",
        "llava-base",
        "--config",
        # Sampling at temperature 1 from a random model seldom meets EOS: ~200 tokens a row keep the eval
        # busy for seconds (greedy decoding may stop at once and finish before the cancel arrives).
        '{"max_new_tokens": 200, "temperature": 1.0}',
        "--batch_size",
        "1",
        "-d",
    ]
    e2e.mix("eval", "create", "slow", *slow, check=0)
    assert _wait_running(e2e, "slow")["status"] == "running"
    out = e2e.mix("eval", "cancel", "slow", check=0).stdout
    assert "cancelled" in out
    rec = e2e.json("eval", "get", "slow")
    assert rec["status"] == "cancelled" and rec["finished_at"] is not None
    assert "slow-results" not in [d["name"] for d in e2e.json("dataset", "list")]
    # #20 §3: a results dataset that was never written is not named
    assert rec["results_dataset"] is None
    shown = e2e.mix("eval", "get", "slow").stdout
    assert "slow-results" not in shown and "results: none written" in shown
    # `eval resume` runs a cancelled eval to the end, once
    out = e2e.mix("eval", "resume", "slow", timeout=600, check=0)
    assert "Resumed eval slow" in out.stderr
    rec = e2e.json("eval", "get", "slow")
    assert rec["status"] == "completed" and rec["results_dataset"] == "slow-results"
    assert set(rec["scores"]) == {"llava-base_v1"} and rec["scores"]["llava-base_v1"]["n"] == 12
    assert "slow-results" in [d["name"] for d in e2e.json("dataset", "list")]
    again = e2e.mix("eval", "resume", "slow")
    assert again.returncode == 1 and "completed; there is nothing to resume" in again.stderr

    e2e.mix("eval", "create", "killed", *slow, check=0)
    run = e2e.json("workflow", "runs", "mixtrain-eval", "-n", "1")[0]  # its supervisor's pid is known at start
    assert run["status"] in ("pending", "running")
    log = e2e.home / "runs" / "mixtrain-eval" / str(run["number"]) / "run.log"
    end = time.monotonic() + 300
    # Kill while the model loads, with no CLI call in between: a tiny model can finish 12 rows in the
    # second a `mixtrain` call takes, and then there is nothing left to kill.
    while "] loading" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < end, "the model never started loading"
        time.sleep(0.02)
    os.killpg(run["pid"], signal.SIGKILL)  # supervisor and worker at once, like the OOM killer or a reboot
    end = time.monotonic() + 60
    while e2e.json("eval", "get", "killed")["status"] == "running" and time.monotonic() < end:
        time.sleep(0.2)
    rec = e2e.json("eval", "get", "killed")
    assert rec["status"] == "failed" and "died without reporting" in rec["error"]
    e2e.mix("eval", "delete", "killed", "-y", check=0)


@pytest.mark.e2e
def test_sigkill_keeps_finished_models_and_eval_resume_does_the_rest(e2e, setup):
    """#20 §3: kill -9 after the first model finished: it is kept and shown; `eval resume` does the rest."""
    args = ["--dataset", "evalset", "--models", "qwen-base,llava-base", "--metric", "contains", "--config", GEN]
    e2e.mix("eval", "create", "halfway", *args, "--batch_size", "4", "-d", check=0)
    run = e2e.json("workflow", "runs", "mixtrain-eval", "-n", "1")[0]  # its supervisor's pid is known at start
    log = e2e.home / "runs" / "mixtrain-eval" / str(run["number"]) / "run.log"
    end = time.monotonic() + 300
    while "[llava-base_v1] loading" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < end, "the second model never started"
        time.sleep(0.02)
    os.killpg(run["pid"], signal.SIGKILL)  # at once, while the second model loads: supervisor and worker
    end = time.monotonic() + 60
    while e2e.json("eval", "get", "halfway")["status"] == "running" and time.monotonic() < end:
        time.sleep(0.2)
    rec = e2e.json("eval", "get", "halfway")
    assert rec["status"] == "failed" and rec["results_dataset"] is None
    assert list(rec["scores"]) == ["qwen-base_v1"] and rec["scores"]["qwen-base_v1"]["n"] == 12
    shown = e2e.mix("eval", "get", "halfway").stdout
    assert "qwen-base_v1" in shown and "results: none written" in shown

    out = e2e.mix("eval", "resume", "halfway", check=0)
    assert "keeping 1 finished model(s): qwen-base_v1" in " ".join(out.stderr.split()), out.stderr
    assert "[qwen-base_v1] finished in an earlier run" in out.stdout and "[qwen-base_v1] loading" not in out.stdout
    rec = e2e.json("eval", "get", "halfway")
    assert rec["status"] == "completed" and rec["results_dataset"] == "halfway-results"
    assert set(rec["scores"]) == {"qwen-base_v1", "llava-base_v1"} and rec["comparison"]["n"] == 12
    got = {r["row_id"]: r for r in e2e.json("eval", "results", "halfway", "--limit", "100")}
    ref = {r["row_id"]: r for r in e2e.json("eval", "results", "cmp", "--limit", "100")}
    assert len(got) == 13
    for i, r in ref.items():  # the kept model's outputs and the resumed model's equal an uninterrupted eval
        assert got[i]["qwen-base_v1__output"] == r["qwen-base_v1__output"]
        assert got[i]["llava-base_v1__output"] == r["llava-base_v1__output"]
    again = e2e.mix("eval", "resume", "halfway", check=1)
    assert "completed; there is nothing to resume" in again.stderr
    e2e.mix("eval", "delete", "halfway", "-y", check=0)
