"""The SDK's shapes: RunStatus, typed records that keep the old dict/JSON form, reads without side
effects (a dead run is settled only by the explicit reconcile), and the one disagreement rule that the
terminal and the dashboard share."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pyarrow as pa
import pytest
from sqlalchemy import select

from mixtrain.client import MixClient
from mixtrain.evals.results import disagrees
from mixtrain.evals.store import EvalStore, label
from mixtrain.metadata.schema import runs
from mixtrain.records import ACTIVE, TERMINAL, Run, RunStatus, json_default, status_tone
from mixtrain.settings import load_settings
from mixtrain.workflows import liveness, procs

FLOW = "from mixtrain import MixFlow\nclass F(MixFlow):\n    def run(self):\n        pass\n"


@pytest.fixture
def client(home, tmp_path) -> MixClient:
    c = MixClient(load_settings())
    flow = tmp_path / "f.py"
    flow.write_text(FLOW)
    c.create_workflow(flow, "wf")
    return c


def test_run_status_is_the_stored_string_with_its_meaning():
    assert [s.value for s in RunStatus] == ["pending", "running", "completed", "failed", "cancelled", "timeout"]
    assert set(ACTIVE) == {RunStatus("pending"), RunStatus("running")}
    assert all(s.is_active and not s.is_terminal for s in ACTIVE)
    assert all(s.is_terminal and not s.is_active for s in TERMINAL) and len(TERMINAL) == 4
    assert RunStatus.RUNNING == "running" and f"{RunStatus.FAILED}" == "failed"
    assert json.dumps({"s": RunStatus.TIMEOUT}) == '{"s": "timeout"}'
    assert status_tone("completed") == "ok" and status_tone("timeout") == status_tone("failed") == "bad"
    assert status_tone("nonsense") == "" and status_tone(None) == ""


def test_a_run_record_is_built_once_and_keeps_its_dict_form(client):
    run = client.workflows.new_run("wf", 1, {"x": 1})
    assert isinstance(run, Run) and run.status is RunStatus.PENDING
    columns = [c.name for c in runs.columns]
    assert list(run.to_dict()) == [*columns, "workflow", "duration", "log_path"]  # the keys and order of before
    assert run["status"] == run.status and {**run}["number"] == 1  # still reads like the old mapping
    assert run.created_at.tzinfo is dt.UTC  # aware UTC, from the schema (SQLite stores naive)
    assert client.get_workflow("wf").created_at.tzinfo is dt.UTC
    text = json.dumps([run], default=json_default)
    assert json.loads(text)[0]["status"] == "pending" and json.loads(text)[0]["inputs"] == {"x": 1}
    with pytest.raises(dataclasses_frozen()):
        run.status = RunStatus.FAILED  # type: ignore[misc]


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


def _dead_pid() -> tuple[int, str | None]:
    """A real process that has exited: its pid and start identity, as the supervisor records them."""
    proc = subprocess.Popen(["sleep", "30"])
    ident = procs.identity(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, ident


def test_a_read_leaves_a_dead_runs_row_unchanged_until_reconcile(client):
    reg = client.workflows
    run = reg.new_run("wf", 1, {})
    pid, ident = _dead_pid()
    reg.record_launcher(run.id, pid, ident)
    assert reg.set_status(run.id, "running", started_at=dt.datetime.now(dt.UTC))

    def row():
        with reg.engine.connect() as conn:
            return dict(conn.execute(select(runs).where(runs.c.id == run.id)).one()._mapping)

    before = row()
    assert reg.run("wf", 1).status == "running"  # every read: the stored state, nothing written
    assert [r.status for r in reg.runs("wf")] == ["running"]
    assert client.get_workflow("wf").runs[0].status == "running"
    assert client.list_runs("wf")[0].status == "running"
    assert row() == before

    assert client.reconcile_runs("wf") == 1  # the explicit step
    after = reg.run("wf", 1)
    assert after.status == "failed" and f"pid {pid}" in after.error and "died without reporting" in after.error
    assert after.finished_at is not None
    assert liveness.reconcile(reg, run.id) is False  # settled: a second pass changes nothing


def test_cli_shows_a_killed_run_as_failed(client, mix):
    """What the user sees is unchanged: `workflow runs` reconciles first, so a killed run reads as failed."""
    reg = client.workflows
    run = reg.new_run("wf", 1, {})
    pid, ident = _dead_pid()
    reg.record_launcher(run.id, pid, ident)
    reg.set_status(run.id, "running")
    rows = json.loads(mix("workflow", "runs", "wf", "--json", check=0).stdout)
    assert rows[0]["status"] == "failed" and "died without reporting" in rows[0]["error"]


@pytest.mark.parametrize(
    ("metric", "row", "expected"),
    [
        ("none", {"a__output": "Red.", "b__output": "red", "a__score": None, "b__score": None}, False),
        ("none", {"a__output": "red", "b__output": "blue", "a__score": None, "b__score": None}, True),
        ("none", {"a__output": None, "b__output": "red", "a__score": None, "b__score": None}, True),
        ("exact_match", {"a__output": "red", "b__output": "Red", "a__score": 1.0, "b__score": 1.0}, False),
        ("exact_match", {"a__output": "red", "b__output": "blue", "a__score": 1.0, "b__score": 0.0}, True),
        ("anls", {"a__output": "x", "b__output": None, "a__score": 0.5, "b__score": float("nan")}, True),
        ("exact_match", {"a__output": None, "b__output": None, "a__score": None, "b__score": float("nan")}, False),
    ],
)
def test_the_disagreement_rule(metric, row, expected):
    assert disagrees(row, ["a", "b"], metric) is expected


def _completed_none_eval(client: MixClient) -> None:
    """A finished `--metric none` eval: its record and its results table, as the eval job writes them."""
    store = EvalStore(client.settings)
    models = [{"name": "a", "version": 1, "label": label("a", 1)}, {"name": "b", "version": 1, "label": label("b", 1)}]
    store.insert(
        name="ev",
        dataset="d",
        snapshot_id=1,
        metric="none",
        results_dataset="ev-results",
        config={"generation": {}, "batch_size": 8, "limit": None},
        models=models,
    )
    outputs = {"a_v1": ["red", "Blue.", "green", "red"], "b_v1": ["red", "blue", "yellow", "a red"]}
    columns = {
        "row_id": pa.array(range(4), pa.int64()),
        "image": pa.array(["/nowhere.png"] * 4, pa.string()),
        "prompt": pa.array(["colour?"] * 4, pa.string()),
        "reference": pa.array([None] * 4, pa.string()),
    }
    for lab, outs in outputs.items():
        columns[f"{lab}__output"] = pa.array(outs, pa.string())
        columns[f"{lab}__score"] = pa.array([None] * 4, pa.float64())
    client.datasets.create_from_arrow("ev-results", pa.table(columns))
    scores = {
        m["label"]: {"mean": None, "ci_low": None, "ci_high": None, "n": 4, "failed": 0, "generation_s": 0.1}
        for m in models
    }
    assert store.complete("ev", scores, [], None)


def test_a_none_eval_shows_the_same_disagreements_in_the_terminal_and_the_dashboard(client, mix):
    """Rows 2 and 3 differ ("green"/"yellow"; "red"/"a red" normalise alike, as do "Blue."/"blue"). The old
    dashboard compared scores only — all null for `--metric none` — and showed none."""
    from fastapi.testclient import TestClient

    from mixtrain.ui.app import create_app

    _completed_none_eval(client)
    assert [r["row_id"] for r in client.eval_results("ev", disagreements=True)] == [2]
    cli_rows = json.loads(mix("eval", "results", "ev", "--disagreements", "--json", check=0).stdout)
    assert [r["row_id"] for r in cli_rows] == [2]
    with TestClient(create_app(client), base_url="http://127.0.0.1") as web:
        page = web.get("/evals/ev?disagreements=1")
    assert page.status_code == 200
    assert 'data-count="1"' in page.text and page.text.count('class="grid-row disagree"') == 1
