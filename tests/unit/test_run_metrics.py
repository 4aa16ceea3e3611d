"""Run metrics in the metadata DB (SQLite and PostgreSQL), the `workflow metrics` view, and the live view."""

from __future__ import annotations

import io
import json
import sys

import pytest

from mixtrain.client import MixClient
from mixtrain.settings import load_settings

FLOW = '''
from mixtrain import MixFlow


class Quick(MixFlow):
    """Finishes at once."""

    def run(self):
        return {"ok": True}
'''


@pytest.fixture(params=["sqlite", "postgres"])
def client(request, home, monkeypatch) -> MixClient:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("MIXTRAIN_DATABASE_URL", url)
        monkeypatch.setenv("MIXTRAIN_CATALOG_URL", url)
    return MixClient(load_settings())


def _run(client, tmp_path) -> dict:
    f = tmp_path / "quick.py"
    f.write_text(FLOW)
    client.create_workflow(f, "quick")
    return client.run_workflow("quick")


def test_series_per_step_sorted_and_idempotent(client, tmp_path):
    from mixtrain.workflows.metrics import MetricsStore

    run = _run(client, tmp_path)
    store = MetricsStore(client.settings.database_url)
    assert client.get_run_metrics("quick", run["number"]) == []  # never trained: empty, no error
    store.record(
        run["id"],
        2,
        {"loss": 1.5, "learning_rate": 1e-4, "epoch": 0.5, "note": "text", "nan": float("nan"), "flag": True},
    )
    store.record(run["id"], 1, {"loss": 2.0, "learning_rate": 2e-4, "epoch": 0.25})
    store.record(run["id"], 2, {"loss": 1.25, "epoch": 0.5})  # a step logged again (resume) replaces, never duplicates
    store.record(run["id"], 2, {"eval_loss": 1.75, "epoch": 0.5})  # an eval log at the same step adds its key
    got = client.get_run_metrics("quick", run["number"])
    assert got == [
        {"step": 1, "epoch": 0.25, "loss": 2.0, "learning_rate": 2e-4},
        {"step": 2, "epoch": 0.5, "loss": 1.25, "learning_rate": 1e-4, "eval_loss": 1.75},
    ]


def test_copy_carries_history_up_to_the_checkpoint(client, tmp_path):
    from mixtrain.workflows.metrics import MetricsStore

    a, b = _run(client, tmp_path), client.run_workflow("quick")
    store = MetricsStore(client.settings.database_url)
    for step in range(1, 8):
        store.record(a["id"], step, {"loss": 10.0 - step})
    assert store.copy(a["id"], b["id"], up_to_step=4) == 4
    assert [r["step"] for r in client.get_run_metrics("quick", b["number"])] == [1, 2, 3, 4]


def test_deleting_the_workflow_deletes_its_metrics(client, tmp_path):
    from sqlalchemy import func, select

    from mixtrain.metadata.schema import run_metrics
    from mixtrain.workflows.metrics import MetricsStore

    run = _run(client, tmp_path)
    store = MetricsStore(client.settings.database_url)
    store.record(run["id"], 1, {"loss": 1.0})
    client.workflows.delete("quick")
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(run_metrics)).scalar() == 0


def test_metrics_cli_table_json_plot_and_empty(mix, tmp_path):
    f = tmp_path / "quick.py"
    f.write_text(FLOW)
    mix("workflow", "create", f, "--name", "quick", check=0)
    mix("workflow", "run", "quick", check=0)
    mix("workflow", "run", "quick", check=0)
    empty = mix("workflow", "metrics", "quick", "2", check=0)
    assert "recorded no training metrics" in empty.stdout
    assert json.loads(mix("workflow", "metrics", "quick", "2", "--json", check=0).stdout) == []
    assert (
        "no metrics to plot"
        in mix("workflow", "metrics", "quick", "2", "--plot", tmp_path / "none.png", check=1).stderr
    )
    assert not (tmp_path / "none.png").exists()

    from unittest import mock

    from mixtrain.workflows.metrics import MetricsStore
    from mixtrain.workflows.registry import WorkflowRegistry

    with mock.patch.dict("os.environ", {"MIXTRAIN_HOME": mix.env["MIXTRAIN_HOME"]}):
        settings = load_settings()
        run_id = WorkflowRegistry(settings).run("quick", 1)["id"]
        store = MetricsStore(settings.database_url)
        for step in range(1, 5):
            store.record(
                run_id,
                step,
                {"loss": 3.0 / step, "learning_rate": 1e-3, "grad_norm": 0.5, "epoch": step / 4, "ppl": 9.0},
            )
        store.record(run_id, 4, {"eval_loss": 0.9, "epoch": 1.0})
    table = mix("workflow", "metrics", "quick", "1", check=0).stdout
    assert "eval loss" in table and "0.75" in table and "also recorded (see --json): ppl" in table
    rows = json.loads(mix("workflow", "metrics", "quick", "1", "--json", check=0).stdout)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[3]["eval_loss"] == 0.9 and rows[0]["ppl"] == 9.0
    png = tmp_path / "loss.png"
    mix("workflow", "metrics", "quick", "1", "--plot", png, check=0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mix("workflow", "metrics", "quick", "9", check=1).stderr.startswith("Error: run #9")
    assert mix("workflow", "metrics", "nope", "1", check=1).stderr.startswith("Error: workflow 'nope' not found")


# -- the attached view ---------------------------------------------------------------------------------
def _feed(view, text: str) -> None:
    view.write(text.encode())


def test_compact_view_hides_the_trainer_stream_but_not_phases(tmp_path):
    from mixtrain.cli.live import CompactView
    from mixtrain.workflows.progress import SECTION_BEGIN, SECTION_END, phase_line, write_progress

    out = io.StringIO()
    view = CompactView(tmp_path, out, tty=False)
    _feed(view, "▶ run #1\n" + phase_line("read dataset d: 16 rows", 0.4) + "\n" + SECTION_BEGIN + "\n")
    _feed(
        view,
        "[INFO] loading model\n{'loss': 6.1, 'epoch': 0.1}\n 10%|█  | 1/10\r 20%|██ | 2/10"
        + phase_line("load model and data", 3.0)
        + "\n",
    )
    write_progress(
        tmp_path,
        {"step": 2, "max_steps": 10, "epoch": 0.2, "num_epochs": 1, "loss": 6.1, "learning_rate": 1e-4, "eta_s": 65},
    )
    view.tick()
    view.tick()  # nothing new: no second line
    _feed(view, "{'loss': 5.9}\n" + SECTION_END + "\nregistered model m version 1\n")
    view.close({"status": "completed"})
    lines = out.getvalue().splitlines()
    assert lines[0] == "▶ run #1" and lines[1] == "● read dataset d: 16 rows (0.4 s)"
    assert "● load model and data (3.0 s)" in lines  # found after a progress bar's \r
    assert "  step 2/10 (20%) · epoch 0.20/1 · loss 6.1000 · lr 1.00e-04 · ETA 1m05s" in lines
    assert lines[-1] == "registered model m version 1"
    assert not any("'loss'" in line or "INFO" in line for line in lines)


def test_compact_view_pipe_lines_are_rare_and_failure_shows_the_hidden_tail(tmp_path, monkeypatch):
    from mixtrain.cli import live
    from mixtrain.workflows.progress import SECTION_BEGIN, SECTION_END, write_progress

    clock = [0.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    view = live.CompactView(tmp_path, out, tty=False)
    _feed(view, SECTION_BEGIN + "\n")
    printed = []
    for step in range(0, 201):
        clock[0] = step * 0.5  # 2 steps/s: 10 s is 20 steps (10%), rarer than 5%
        write_progress(tmp_path, {"step": step, "max_steps": 200, "epoch": step / 200, "num_epochs": 1})
        view.tick()
    printed = [line for line in out.getvalue().splitlines() if line.startswith("  step")]
    assert [p.split()[1] for p in printed] == [f"{s}/200" for s in range(0, 201, 20)]
    _feed(
        view,
        "Traceback (most recent call last):\nRuntimeError: boom\n"
        + SECTION_END
        + "\nError: Axolotl training exited with code 1: RuntimeError: boom\n",
    )
    view.close({"status": "failed", "workflow": "w", "number": 3})
    text = out.getvalue()
    assert text.index("Error: Axolotl") < text.index("RuntimeError: boom\n")  # the hidden cause comes back on failure
    assert "mixtrain workflow logs w 3" in text and len(text.splitlines()) < 20


def test_compact_view_on_a_terminal_draws_a_progress_bar(tmp_path):
    from mixtrain.cli.live import CompactView
    from mixtrain.workflows.progress import SECTION_BEGIN, SECTION_END, write_progress

    out = io.StringIO()
    view = CompactView(tmp_path, out, tty=True)
    _feed(view, SECTION_BEGIN + "\n")
    write_progress(tmp_path, {"step": 3, "max_steps": 12, "epoch": 0.25, "num_epochs": 1, "loss": 2.5})
    view.tick()
    assert view.bar is not None and view.bar.tasks[0].completed == 3 and view.bar.tasks[0].total == 12
    _feed(view, SECTION_END + "\n")
    view.close({"status": "completed"})
    assert view.bar is None and "3/12" in out.getvalue()


def test_cli_process_imports_no_plotting_or_training_library(mix):
    code = "import sys, mixtrain.cli.main, mixtrain.cli.workflow, mixtrain.cli.live; print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=mix.env, check=True
    ).stdout.strip()
    assert out == "[]"
