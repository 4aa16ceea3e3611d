"""Eval records on SQLite and a real PostgreSQL: migration 0002 matches the schema, finished evals are
final, an eval whose run ended takes the run's status, and `for_model` finds a model's evals."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from mixtrain.client import MixClient
from mixtrain.errors import AlreadyExists, NotFound
from mixtrain.evals.store import EvalStore, label
from mixtrain.metadata.db import get_engine
from mixtrain.metadata.schema import eval_models, evals
from mixtrain.settings import load_settings


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, home, monkeypatch) -> EvalStore:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("MIXTRAIN_DATABASE_URL", url)
        monkeypatch.setenv("MIXTRAIN_CATALOG_URL", url)
    return EvalStore(load_settings())


def _insert(store, name="e1", models=(("a", 1), ("b", 2))):
    return store.insert(
        name=name,
        dataset="d",
        snapshot_id=2**62,
        metric="exact_match",
        results_dataset=f"{name}-results",
        config={"generation": {"max_new_tokens": 8}, "batch_size": 4},
        models=[{"name": n, "version": v, "label": label(n, v)} for n, v in models],
    )


def test_migration_creates_the_schema_tables(store):
    engine = get_engine(store.settings.database_url)
    insp = inspect(engine)
    for table in (evals, eval_models):
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name


def test_record_shape_and_labels(store):
    rec = _insert(store)
    assert rec["status"] == "pending" and rec["run"] is None and rec["scores"] == {}
    assert rec["snapshot_id"] == 2**62  # Iceberg snapshot ids are 64-bit
    assert rec["models"] == [{"name": "a", "version": 1, "label": "a_v1"}, {"name": "b", "version": 2, "label": "b_v2"}]
    # not written yet, so not named (#20 §3); the name it will get is known to the store
    assert rec["results_dataset"] is None and store.results_name("e1") == "e1-results"
    assert rec["created_at"].tzinfo is not None
    with pytest.raises(AlreadyExists):
        _insert(store)


def test_complete_is_final_and_scores_read_back(store):
    _insert(store)
    assert store.set_status("e1", "running")
    scores = {
        "a_v1": {"mean": 0.5, "ci_low": 0.2, "ci_high": 0.8, "n": 10, "failed": 1, "generation_s": 1.5},
        "b_v2": {"mean": 0.9, "ci_low": 0.7, "ci_high": 1.0, "n": 10, "failed": 1, "generation_s": 2.0},
    }
    failures = [{"row_id": 3, "image": "x.png", "reason": "not found"}]
    assert store.complete("e1", scores, failures, {"a": "a_v1", "b": "b_v2", "diff": -0.4, "p_value": 0.01})
    assert not store.set_status("e1", "failed", error="late writer")  # a finished eval is never overwritten
    assert not store.complete("e1", scores, [], None)
    rec = store.get("e1")
    assert rec["status"] == "completed" and rec["error"] is None and rec["finished_at"] is not None
    assert rec["scores"]["b_v2"]["mean"] == 0.9 and rec["scores"]["a_v1"]["failures"] == failures
    assert rec["comparison"]["p_value"] == 0.01
    assert rec["results_dataset"] == "e1-results"


def test_a_finished_model_is_kept_and_a_reopened_eval_finds_it(store):
    """#20 §3: each model's results are stored as it finishes; only an inactive eval reopens, once."""
    _insert(store)
    assert store.set_status("e1", "running")
    summary = {"mean": 0.5, "ci_low": 0.2, "ci_high": 0.8, "n": 2, "failed": 0, "generation_s": 1.0}
    rows = {"outputs": ["red", None], "scores": [1.0, None]}
    assert store.save_model("e1", "a_v1", summary, [], rows)
    assert store.get("e1")["scores"]["a_v1"]["mean"] == 0.5  # shown while b is still running
    assert store.finished_models("e1") == {"a_v1": {"summary": summary, "rows": rows}}
    assert not store.reopen("e1", 1)  # still running: nothing to reopen
    assert store.set_status("e1", "cancelled")
    assert not store.save_model("e1", "b_v2", summary, [], rows)  # a late writer after cancel
    assert store.reopen("e1", None) and not store.reopen("e1", None)  # the second of two resumes loses
    rec = store.get("e1")
    assert rec["status"] == "pending" and rec["error"] is None and rec["finished_at"] is None
    assert list(store.finished_models("e1")) == ["a_v1"]


def test_for_model_and_delete(store):
    _insert(store, "e1", (("a", 1), ("b", 1)))
    _insert(store, "e2", (("b", 2),))
    assert [r["name"] for r in store.for_model("b")] == ["e1", "e2"]
    assert [r["name"] for r in store.for_model("a")] == ["e1"]
    assert store.for_model("c") == []
    store.delete("e1")
    assert [r["name"] for r in store.list()] == ["e2"]
    assert [r["name"] for r in store.for_model("a")] == []  # its model rows went with it
    with pytest.raises(NotFound):
        store.get("e1")


def test_eval_takes_the_status_of_its_ended_run(store, tmp_path):
    """A run killed before its job reported leaves the eval `running`; the explicit reconcile settles
    that (a read alone changes nothing), and the SDK's read reconciles first."""
    client = MixClient(store.settings)
    flow = tmp_path / "f.py"
    flow.write_text("from mixtrain import MixFlow\nclass F(MixFlow):\n    def run(self):\n        pass\n")
    client.create_workflow(flow, "wf")
    run = client.workflows.new_run("wf", 1, {})
    _insert(store)
    store.attach_run("e1", run["id"])
    store.set_status("e1", "running")
    assert store.get("e1")["run"] == {"workflow": "wf", "number": 1}
    client.workflows.set_status(run["id"], "failed", error="the run's process (pid 1) died without reporting")
    assert store.get("e1").status == "running"  # reads have no side effects
    store.reconcile("e1")
    rec = store.get("e1")
    assert rec["status"] == "failed" and "died without reporting" in rec["error"]
    assert client.get_eval_info("e1").status.is_terminal
