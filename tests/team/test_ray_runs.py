"""Team mode on a real 2-node Ray cluster on loopback (#21 §2): a workflow run is a Ray job.

One cluster for the session (``ray_cluster``); the workflows here sleep or print, nothing trains.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request

import pytest

from harness import Mix, wait_for, write
from harness.cli import home_env

SECRET = "s3cr3t-Ray-VALUE-7f1e"

FLOWS = {
    "hello.py": '''
import hashlib
import os
import socket
from mixtrain import MixFlow

class Hello(MixFlow):
    """Prints, reads its secret, returns."""

    def run(self, who: str = "ray"):
        print(f"hello {who} from pid {os.getpid()}", flush=True)
        print("token:", os.environ["API_TOKEN"], flush=True)  # the run log redacts it
        return {"sha256": hashlib.sha256(os.environ["API_TOKEN"].encode()).hexdigest(), "ray": "RAY_ADDRESS" in os.environ}
''',
    "sleeper.py": """
import time
from mixtrain import MixFlow

class Sleeper(MixFlow):
    def run(self, seconds: float = 120.0):
        print("sleeping", flush=True)
        time.sleep(seconds)
        return seconds
""",
}


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


@pytest.fixture
def team(tmp_path, ray_cluster) -> Mix:
    """The real CLI in a fresh home, with MIXTRAIN_RAY_ADDRESS pointing at the session's cluster."""
    m = Mix(tmp_path)
    m.env["MIXTRAIN_RAY_ADDRESS"] = ray_cluster.dashboard_url
    for name, text in FLOWS.items():
        write(tmp_path / name, text)
    return m


def test_the_test_cluster_has_two_live_nodes(ray_cluster):
    summary = _get(f"{ray_cluster.dashboard_url}/nodes?view=summary")["data"]["summary"]
    alive = {n["raylet"]["nodeId"] for n in summary if n["raylet"]["state"] == "ALIVE"}
    assert alive == set(ray_cluster.node_ids) and len(alive) == 2


def test_run_is_a_ray_job_with_logs_and_its_secret_kept_out_of_the_jobs_api(team, ray_cluster):
    team("secret", "create", "API_TOKEN", input=SECRET + "\n", check=0)
    team("workflow", "create", "hello.py", "--name", "hello", check=0)
    out = team("workflow", "run", "hello", "--who", "cluster", check=0)
    run = team.json("workflow", "runs", "hello")[0]
    assert run["status"] == "completed", out.stderr
    place = run["placement"]
    assert place["backend"] == "ray" and place["address"] == ray_cluster.dashboard_url
    assert f"run{run['id']}" in place["job"]  # the submission id carries the run id
    # Present in the run: the job's process had the secret (it hashed the real value)...
    assert run["output"]["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest() and run["output"]["ray"]
    # ...and the run's log is the job's log, redacted.
    log = team("workflow", "logs", "hello", "1", check=0).stdout
    assert "hello cluster from pid" in log and "token: ***" in log and "■ run #1 completed" in log
    # Absent from everything the Jobs API shows to a dashboard reader.
    job = _get(f"{ray_cluster.dashboard_url}/api/jobs/{place['job']}")
    assert job["status"] == "SUCCEEDED" and "mixtrain.workflows.rayjob" in job["entrypoint"]
    logs = _get(f"{ray_cluster.dashboard_url}/api/jobs/{place['job']}/logs")["logs"]
    listed = _get(f"{ray_cluster.dashboard_url}/api/jobs/")
    for shown in (job["entrypoint"], json.dumps(job.get("runtime_env")), json.dumps(job), logs, json.dumps(listed)):
        assert SECRET not in shown
    assert "hello cluster" in logs


def test_cancel_stops_the_job_and_a_stopped_or_vanished_job_fails_the_run_with_the_reason(team, ray_cluster):
    team("workflow", "create", "sleeper.py", "--name", "sleeper", check=0)
    team("workflow", "run", "sleeper", "-d", check=0)
    wait_for(lambda: "sleeping" in team("workflow", "logs", "sleeper", "1").stdout, timeout=120, what="run 1 to start")
    assert team.json("workflow", "runs", "sleeper")[0]["status"] == "running"
    assert "cancelled" in team("workflow", "cancel", "sleeper", "1", check=0).stdout
    run = team.json("workflow", "runs", "sleeper")[0]
    job = _get(f"{ray_cluster.dashboard_url}/api/jobs/{run['placement']['job']}")
    assert run["status"] == "cancelled" and job["status"] == "STOPPED"

    # Stopped outside mixtrain (the dashboard, `ray job stop`): the run fails with Ray's own reason.
    team("workflow", "run", "sleeper", "-d", check=0)
    wait_for(lambda: "sleeping" in team("workflow", "logs", "sleeper", "2").stdout, timeout=120, what="run 2 to start")
    sid = team.json("workflow", "runs", "sleeper")[0]["placement"]["job"]
    req = urllib.request.Request(f"{ray_cluster.dashboard_url}/api/jobs/{sid}/stop", method="POST")
    urllib.request.urlopen(req, timeout=30).close()
    wait_for(lambda: _get(f"{ray_cluster.dashboard_url}/api/jobs/{sid}")["status"] == "STOPPED", timeout=60)
    run = team.json("workflow", "runs", "sleeper")[0]
    assert run["status"] == "failed" and "was stopped outside mixtrain" in run["error"], run
    assert sid in run["error"]

    # A job the cluster no longer knows (its head restarted and forgot it): the run fails saying so.
    team("workflow", "run", "sleeper", "-d", check=0)
    wait_for(lambda: "sleeping" in team("workflow", "logs", "sleeper", "3").stdout, timeout=120, what="run 3 to start")
    run = team.json("workflow", "runs", "sleeper")[0]
    with home_env(team.home):
        from mixtrain.settings import load_settings
        from mixtrain.workflows.registry import WorkflowRegistry

        WorkflowRegistry(load_settings()).record_placement(run["id"], {**run["placement"], "job": "mixtrain-forgotten"})
    run3 = team.json("workflow", "runs", "sleeper")[0]
    assert (
        run3["status"] == "failed"
        and "mixtrain-forgotten" in run3["error"]
        and "is gone from the cluster" in run3["error"]
    )
    req = urllib.request.Request(f"{ray_cluster.dashboard_url}/api/jobs/{run['placement']['job']}/stop", method="POST")
    urllib.request.urlopen(req, timeout=30).close()
