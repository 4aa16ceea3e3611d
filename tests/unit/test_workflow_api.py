"""The Python API over the workflow engine: MixClient().create_workflow / run_workflow / get_workflow / list_runs.

Runs are real: a detached supervisor process and a forked worker, as from the CLI.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mixtrain.errors import AlreadyExists, InvalidInput, NotFound

FLOW = '''
import os
import time
from pathlib import Path
from mixtrain import MixFlow, mixparam

class Train(MixFlow):
    """Pretends to train."""
    epochs: int = mixparam(default=1, description="Epochs")

    def run(self, dataset_name: str, pause: float = 0.0, fail: bool = False):
        time.sleep(pause)
        if fail:
            raise RuntimeError("diverged")
        return {"dataset": dataset_name, "epochs": self.epochs, "run_number": int(os.environ["MIXTRAIN_RUN_NUMBER"])}
'''


@pytest.fixture
def client(home, tmp_path):
    import mixtrain

    path = tmp_path / "train.py"
    path.write_text(FLOW)
    c = mixtrain.MixClient()
    info = c.create_workflow(path, "train", description="pretend")
    assert info["version"] == 1 and info["entrypoint"] == "Train"
    return c


def test_create_get_run_list(client, tmp_path):
    wf = client.get_workflow("train")
    assert wf["description"] == "pretend" and wf["doc"].startswith("Pretends")
    assert [i["name"] for i in wf["inputs"]] == ["epochs", "dataset_name", "pause", "fail"]
    assert [w["name"] for w in client.list_workflows()] == ["train"]

    done = client.run_workflow("train", {"dataset_name": "d", "epochs": 4})
    assert done["status"] == "completed"
    assert done["output"] == {"dataset": "d", "epochs": 4, "run_number": 1}
    assert done["inputs"] == {"epochs": 4, "dataset_name": "d", "pause": 0.0, "fail": False}

    started = client.run_workflow("train", {"dataset_name": "d", "pause": 1.0}, detach=True)
    assert started["number"] == 2 and started["status"] in ("pending", "running")
    runs = client.list_runs("train")
    assert [r["number"] for r in runs] == [2, 1]
    deadline = time.monotonic() + 30
    while client.list_runs("train", 1)[0]["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, "detached run never finished"
        time.sleep(0.05)
    assert client.list_runs("train", 1)[0]["status"] == "completed"
    assert len(client.list_runs("train", 1)) == 1


def test_failure_is_a_record_not_an_exception(client):
    done = client.run_workflow("train", {"dataset_name": "d", "fail": True})
    assert done["status"] == "failed" and done["error"] == "RuntimeError: diverged"


def test_api_errors(client, tmp_path):
    with pytest.raises(InvalidInput, match="missing required input --dataset_name"):
        client.run_workflow("train", {})
    with pytest.raises(InvalidInput, match="--epochs: expected an integer"):
        client.run_workflow("train", {"dataset_name": "d", "epochs": "many"})
    with pytest.raises(NotFound):
        client.run_workflow("nope", {})
    with pytest.raises(NotFound):
        client.get_workflow("nope")
    with pytest.raises(AlreadyExists):
        client.create_workflow(tmp_path / "train.py", "train")
    assert client.list_runs("train") == [], "nothing starts on bad input"


def test_every_run_has_a_start_time(client):
    """A run so quick that its worker reports before the supervisor looks up still gets started_at."""
    for _ in range(3):
        done = client.run_workflow("train", {"dataset_name": "d"})
        assert done["status"] == "completed"
        assert done["started_at"] is not None and done["started_at"] <= done["finished_at"], done
        assert done["duration"] is not None and done["worker_pid"]


def test_cancel_before_start_runs_nothing(client, tmp_path):
    from mixtrain.workflows import procs, runner

    started = client.run_workflow("train", {"dataset_name": "d", "pause": 5.0}, detach=True)
    cancelled = runner.cancel(client.settings, "train", started["number"], grace=10)
    assert cancelled["status"] == "cancelled"
    deadline = time.monotonic() + 15
    while procs.alive(started["pid"], started["pid_start"]):
        assert time.monotonic() < deadline, "the supervisor outlived its cancel"
        time.sleep(0.05)
    final = client.list_runs("train", 1)[0]
    assert final["status"] == "cancelled" and final["output"] is None
    assert not (Path(final["run_dir"]) / "output.json").exists()
