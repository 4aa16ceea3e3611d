"""`mixtrain eval` through the real CLI, without loading a model: bad input is refused with one line
and leaves nothing behind; an eval whose every image is unreadable still completes (rows fail, not
the eval) through the real run engine; delete and `model get` see evals.

Scoring real models is tested in tests/e2e/test_eval.py and the learning test.
"""

from __future__ import annotations

import json

import pytest

from harness import Mix

FILES = {
    "qa.csv": "image_path,prompt,response\nmissing1.png,What colour?,red\nnotes.txt,What colour?,blue\nmissing3.png,What colour?,green\n",
    "noref.csv": "image_path,prompt\nmissing1.png,What colour?\n",
    "notes.txt": "not an image",
}


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    for name, text in FILES.items():
        (root / name).write_text(text)
    cli = Mix(root)
    cli("dataset", "create", "qa", "--file", "qa.csv", check=0)
    cli("dataset", "create", "noref", "--file", "noref.csv", check=0)
    cli("dataset", "create", "taken-results", "--file", "noref.csv", check=0)
    (root / "fake-llava").mkdir()
    (root / "fake-llava" / "config.json").write_text(
        '{"model_type": "llava"}'
    )  # config only: register reads no weights
    cli("model", "register", "base", "--base_model", str(root / "fake-llava"), "--model_type", "llava", check=0)
    cli("model", "register", "other", "--base_model", str(root / "fake-llava"), "--model_type", "llava", check=0)
    # Every image of qa is missing or not an image: the eval completes without loading a model.
    cli("eval", "create", "existing", "--dataset", "qa", "--models", "base,other", timeout=300, check=0)
    return cli


Q = ["--dataset", "qa", "--models", "base"]
CASES = [
    ("unknown-dataset", ["eval", "create", "e1", "--dataset", "nope", "--models", "base"], "dataset 'nope' not found"),
    ("unknown-model", ["eval", "create", "e1", "--dataset", "qa", "--models", "base,nope"], "model 'nope' not found"),
    (
        "unknown-version",
        ["eval", "create", "e1", "--dataset", "qa", "--models", "base:9"],
        "model 'base' has no version 9",
    ),
    ("bad-version", ["eval", "create", "e1", "--dataset", "qa", "--models", "base:x"], "bad model version in 'base:x'"),
    (
        "missing-image-column",
        ["eval", "create", "e1", *Q, "--image_column", "img"],
        "has no column 'img' (--image_column)",
    ),
    (
        "missing-prompt-column",
        ["eval", "create", "e1", *Q, "--prompt_column", "question"],
        "has no column 'question' (--prompt_column)",
    ),
    (
        "missing-reference-column",
        ["eval", "create", "e1", *Q, "--reference_column", "answer"],
        "has no column 'answer'",
    ),
    (
        "metric-needs-reference",
        ["eval", "create", "e1", "--dataset", "noref", "--models", "base", "--metric", "exact_match"],
        "--metric exact_match needs a reference column",
    ),
    ("unknown-metric", ["eval", "create", "e1", *Q, "--metric", "bleu"], "unknown metric 'bleu'"),
    ("limit-zero", ["eval", "create", "e1", *Q, "--limit", "0"], "--limit must be a whole number ≥ 1"),
    ("batch-size-zero", ["eval", "create", "e1", *Q, "--batch_size", "0"], "--batch_size must be a whole number ≥ 1"),
    ("duplicate-eval", ["eval", "create", "existing", *Q], "eval 'existing' already exists"),
    ("results-dataset-taken", ["eval", "create", "taken", *Q], "dataset 'taken-results' already exists"),
    ("bad-eval-name", ["eval", "create", "Bad.Name", *Q], "invalid eval name"),
    ("eval-name-too-long", ["eval", "create", "e" * 60, *Q], "too long for its results dataset"),
    ("models-empty", ["eval", "create", "e1", "--dataset", "qa", "--models", ""], "--models lists no model"),
    (
        "models-empty-entry",
        ["eval", "create", "e1", "--dataset", "qa", "--models", "base,,other"],
        "--models has an empty entry",
    ),
    ("model-twice", ["eval", "create", "e1", "--dataset", "qa", "--models", "base,base"], "lists base version 1 twice"),
    (
        "model-twice-via-version",
        ["eval", "create", "e1", "--dataset", "qa", "--models", "base,base:1"],
        "lists base version 1 twice",
    ),
    ("config-bad-json", ["eval", "create", "e1", *Q, "--config", "{max_new_tokens: 4"], "--config: invalid JSON"),
    ("config-not-object", ["eval", "create", "e1", *Q, "--config", "[4]"], "--config must be a JSON object"),
    (
        "config-unknown-key",
        ["eval", "create", "e1", *Q, "--config", '{"beams": 4}'],
        "unknown generation setting(s): beams",
    ),
    ("config-bad-value", ["eval", "create", "e1", *Q, "--config", '{"temperature": -1}'], "temperature ≥ 0"),
    ("get-unknown", ["eval", "get", "nope"], "eval 'nope' not found"),
    ("results-unknown", ["eval", "results", "nope"], "eval 'nope' not found"),
    ("logs-unknown", ["eval", "logs", "nope"], "eval 'nope' not found"),
    ("cancel-unknown", ["eval", "cancel", "nope"], "eval 'nope' not found"),
    ("cancel-finished", ["eval", "cancel", "existing"], "eval 'existing' is already completed"),
    ("delete-unknown", ["eval", "delete", "nope", "-y"], "eval 'nope' not found"),
    ("delete-unconfirmed", ["eval", "delete", "existing"], "-y"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_eval_bad_input(ev, argv, message):
    res = ev(*argv, input="")
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.startswith("Error: ") and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_bad_input_leaves_nothing(ev):
    """After every rejected create: one eval, one eval run, no results dataset but the real one."""
    for case in CASES:  # order-independent: run the creates again here
        if case[1][:2] == ["eval", "create"]:
            assert ev(*case[1]).returncode == 1
    assert [e["name"] for e in json.loads(ev("eval", "list", "--json", check=0).stdout)] == ["existing"]
    assert _datasets(ev) == ["existing-results", "noref", "qa", "taken-results"]
    runs = json.loads(ev("workflow", "runs", "mixtrain-eval", "--json", check=0).stdout)
    assert [r["number"] for r in runs] == [1]


def test_unreadable_images_fail_rows_not_the_eval(ev):
    rec = json.loads(ev("eval", "get", "existing", "--json", check=0).stdout)
    assert rec["status"] == "completed" and rec["error"] is None
    assert rec["run"] == {"workflow": "mixtrain-eval", "number": 1}
    assert rec["results_dataset"] == "existing-results"
    assert [m["label"] for m in rec["models"]] == ["base_v1", "other_v1"]
    for lab in ("base_v1", "other_v1"):
        s = rec["scores"][lab]
        assert (s["n"], s["failed"], s["mean"]) == (0, 3, None)
        assert [f["row_id"] for f in s["failures"]] == [0, 1, 2]
        assert "not found" in s["failures"][0]["reason"] and "decode" in s["failures"][1]["reason"]
    rows = json.loads(ev("eval", "results", "existing", "--json", check=0).stdout)
    assert [r["row_id"] for r in rows] == [0, 1, 2]
    assert list(rows[0]) == [
        "row_id",
        "image",
        "prompt",
        "reference",
        "base_v1__output",
        "base_v1__score",
        "other_v1__output",
        "other_v1__score",
    ]
    assert [r["reference"] for r in rows] == ["red", "blue", "green"]
    assert all(r["base_v1__output"] is None and r["base_v1__score"] is None for r in rows)
    shown = ev("eval", "get", "existing", check=0).stdout
    assert "3 row(s) failed" in shown and "row 1:" in shown
    log = ev("eval", "logs", "existing", check=0).stdout
    assert "row 0:" in log and "counted as failed" in log and "■ run #1 completed" in log


def test_model_get_lists_its_evals(ev):
    info = json.loads(ev("model", "get", "other", "--json", check=0).stdout)
    assert [(e["eval"], e["label"], e["status"]) for e in info["evals"]] == [("existing", "other_v1", "completed")]
    assert "existing" in ev("model", "get", "base", check=0).stdout


def test_delete_removes_record_and_results(ev):
    ev(
        "eval",
        "create",
        "gone",
        "--dataset",
        "qa",
        "--models",
        "base",
        "--metric",
        "none",
        "--limit",
        "1",
        timeout=300,
        check=0,
    )
    rec = json.loads(ev("eval", "get", "gone", "--json", check=0).stdout)
    assert (
        rec["status"] == "completed" and rec["config"]["limit"] == 1 and rec["config"]["reference_column"] == "response"
    )
    assert "gone-results" in _datasets(ev)
    rows = json.loads(ev("eval", "results", "gone", "--json", check=0).stdout)
    assert [(r["row_id"], r["base_v1__output"], r["base_v1__score"]) for r in rows] == [
        (0, None, None)
    ]  # --limit 1; metric none
    ev("eval", "delete", "gone", "-y", check=0)
    assert "gone" not in [e["name"] for e in json.loads(ev("eval", "list", "--json", check=0).stdout)]
    assert "gone-results" not in _datasets(ev)
    assert "eval 'gone' not found" in ev("eval", "get", "gone").stderr


def _datasets(ev) -> list[str]:
    return sorted(d["name"] for d in json.loads(ev("dataset", "list", "--json", check=0).stdout))


def test_sdk_create_eval_and_get_eval(ev, monkeypatch):
    """The Python API: create_eval waits for the run (a fresh supervisor process) and get_eval reads it."""
    import mixtrain
    from mixtrain.client import MixClient
    from mixtrain.errors import InvalidInput
    from mixtrain.settings import load_settings

    monkeypatch.setenv("MIXTRAIN_HOME", ev.env["MIXTRAIN_HOME"])
    client = MixClient(load_settings())
    with pytest.raises(InvalidInput, match="unknown metric"):
        client.create_eval("sdk", "qa", ["base"], metric="bleu")
    rec = client.create_eval("sdk", "qa", ["base", "other:1"], metric="anls", limit=2)
    assert rec["status"] == "completed" and rec["metric"] == "anls" and rec["run"]["workflow"] == "mixtrain-eval"
    assert "sdk" in [e["name"] for e in client.list_evals()]
    ev_ = mixtrain.get_eval("sdk", client=client)
    assert set(ev_.scores) == {"base_v1", "other_v1"} and ev_.scores["base_v1"]["failed"] == 2
    df = ev_.results().to_pandas()
    assert list(df.row_id) == [0, 1] and list(df.reference) == ["red", "blue"]
    client.delete_eval("sdk")
    assert "sdk" not in [e["name"] for e in client.list_evals()]
