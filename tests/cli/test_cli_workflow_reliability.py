"""Runs that go wrong: killed processes, concurrent starts, secrets, user exceptions, timeouts, no GPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import Mix, gone, registry, wait_for

SECRET = "sk-live-0123456789abcdef"

FLOWS = {
    "sleeper.py": """
import time
from mixtrain import MixFlow

class Sleeper(MixFlow):
    def run(self, seconds: float = 60.0):
        print("started", flush=True)
        time.sleep(seconds)
        return seconds
""",
    "leaky.py": '''
import hashlib
import os
import sys
import time
from mixtrain import MixFlow

class Leaky(MixFlow):
    """Tries every way to leak the secret it was given."""

    def run(self, hold: float = 0.0):
        token = os.environ["API_TOKEN"]
        print("token is", token, flush=True)
        print("token on stderr:", token, file=sys.stderr, flush=True)
        print(f"inline:{token}:end")
        with open(os.path.join(os.environ["MIXTRAIN_RUN_DIR"], "worker.pid"), "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(hold)
        return {"sha256": hashlib.sha256(token.encode()).hexdigest()}
''',
    "broken.py": """
from mixtrain import MixFlow
from mixtrain.errors import InvalidInput

def load_shards(n):
    raise ValueError(f"shard {n} is corrupt")

class Broken(MixFlow):
    def run(self, shard: int = 7, expected: bool = False):
        print("about to fail", flush=True)
        if expected:  # a failure the workflow explains itself: no traceback needed
            raise InvalidInput(f"dataset has no shard {shard}", "pass --shard 0..6")
        load_shards(shard)
""",
    "slowpoke.py": """
import time
from mixtrain import MixFlow

class Slowpoke(MixFlow):
    _mixflow_timeout = 2

    def run(self):
        print("working", flush=True)
        time.sleep(600)  # only the 2 s timeout ends it before the test's own 10-minute limit
""",
    "wants_gpu.py": """
from mixtrain import MixFlow

class WantsGpu(MixFlow):
    _mixflow_gpu = "a100"
    _mixflow_memory = 81920

    def run(self):
        print("ran anyway", flush=True)
        return "ok"
""",
    "quick.py": """
import os
import time
from mixtrain import MixFlow

class Quick(MixFlow):
    def run(self, tag: str):
        time.sleep(0.5)
        return {"tag": tag, "run": os.environ["MIXTRAIN_RUN_NUMBER"]}
""",
}


@pytest.fixture(scope="module")
def rel(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    cli = Mix(root)
    for name, text in FLOWS.items():
        (root / name).write_text(text)
        cli("workflow", "create", name, "--name", name[:-3].replace("_", "-"), check=0)
    cli("secret", "set", "API_TOKEN", input=SECRET, check=0)
    cli.root = root
    return cli


def start_and_wait_running(cli, name):
    cli("workflow", "run", name, "-d", check=0)
    reg = registry(cli)
    return wait_for(
        lambda: (r := reg.runs(name, 1)[0])["status"] == "running" and r["worker_pid"] and r, what=f"{name} running"
    )


@pytest.mark.parametrize("how", ["group", "both-pids"])
def test_sigkill_mid_run_is_reported_as_failed(rel, how):
    run = start_and_wait_running(rel, "sleeper")
    if how == "group":
        os.killpg(run["pid"], signal.SIGKILL)  # the supervisor leads the run's process group
    else:
        os.kill(run["worker_pid"], signal.SIGKILL)
        os.kill(run["pid"], signal.SIGKILL)
    for pid in (run["pid"], run["worker_pid"]):
        wait_for(lambda: gone(pid), timeout=10, what=f"pid {pid} to die")

    rows = json.loads(rel("workflow", "runs", "sleeper", "--json", check=0).stdout)
    this = next(r for r in rows if r["number"] == run["number"])
    assert this["status"] == "failed", this
    assert "killed" in this["error"] or "died" in this["error"], this["error"]
    assert this["finished_at"] is not None
    table = rel("workflow", "get", "sleeper", check=0).stdout
    assert f"#{run['number']}" in table and "failed" in table
    assert not any(r["status"] in ("pending", "running") for r in rows)


def test_sigkill_of_the_worker_only_is_recorded_by_the_supervisor(rel):
    run = start_and_wait_running(rel, "sleeper")
    os.kill(run["worker_pid"], signal.SIGKILL)
    reg = registry(rel)
    final = wait_for(
        lambda: (r := reg.run("sleeper", run["number"]))["status"] != "running" and r, timeout=15, what="run to end"
    )
    assert final["status"] == "failed" and "SIGKILL" in final["error"], final
    wait_for(lambda: gone(run["pid"]), timeout=10, what="supervisor to exit")
    assert "SIGKILL" in Path(final["log_path"]).read_text()


def test_concurrent_runs_get_distinct_numbers_and_both_complete(rel):
    procs = [
        subprocess.Popen(
            [shutil.which("mixtrain", path=rel.env["PATH"]), "workflow", "run", "quick", "--tag", tag],
            env=rel.env,
            cwd=rel.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = json.loads(rel("workflow", "runs", "quick", "--json", check=0).stdout)
    assert sorted(r["number"] for r in rows) == [1, 2]
    assert all(r["status"] == "completed" for r in rows)
    assert sorted(r["output"]["tag"] for r in rows) == ["a", "b"]
    assert all(r["output"]["run"] == str(r["number"]) for r in rows)


def test_secrets_never_leak(rel):
    import hashlib

    rel("workflow", "run", "leaky", "--hold", "1.5", "-d", check=0)
    reg = registry(rel)
    run = wait_for(
        lambda: (r := reg.runs("leaky", 1)[0])["status"] == "running" and r["worker_pid"] and r, what="leaky running"
    )
    pids = [run["pid"], run["worker_pid"]]
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline, f"secret in the command line of pid {pid}"
    final = wait_for(
        lambda: (r := reg.run("leaky", run["number"]))["status"] not in ("pending", "running") and r, what="leaky done"
    )
    assert final["status"] == "completed", final
    assert final["output"] == {"sha256": hashlib.sha256(SECRET.encode()).hexdigest()}, "the run did not get the secret"

    log = rel("workflow", "logs", "leaky", run["number"], check=0).stdout
    assert "token is ***" in log and "token on stderr: ***" in log and "inline:***:end" in log
    assert SECRET not in log
    runs_json = rel("workflow", "runs", "leaky", "--json", check=0).stdout
    assert SECRET not in runs_json
    assert_not_in_any_file(SECRET, rel.env["MIXTRAIN_HOME"])


def assert_not_in_any_file(needle: str, folder) -> None:
    """grep in a child process: opening and closing the SQLite files here would drop this process's
    POSIX locks on them (a POSIX rule), and SQLite in another process could then delete the WAL under
    this process's open connection."""
    proc = subprocess.run(["grep", "-rlF", "--", needle, str(folder)], capture_output=True, text=True)
    assert proc.returncode == 1, f"{needle!r} found in clear in: {proc.stdout or proc.stderr}"


def test_exception_in_run_fails_with_the_users_traceback(rel):
    proc = rel("workflow", "run", "broken", "--shard", "3", check=1)
    assert "about to fail" in proc.stdout
    assert (
        "Traceback" in proc.stdout and "load_shards" in proc.stdout and "ValueError: shard 3 is corrupt" in proc.stdout
    )
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: run #1 of broken failed: ValueError: shard 3 is corrupt")
    )
    run = json.loads(rel("workflow", "runs", "broken", "--json", check=0).stdout)[0]
    assert run["status"] == "failed" and run["error"] == "ValueError: shard 3 is corrupt"
    log = Path(run["log_path"]).read_text()
    assert 'broken.py", line' in log and "in load_shards" in log


def test_explained_failure_in_run_has_no_traceback(rel):
    proc = rel("workflow", "run", "broken", "--shard", "9", "--expected", check=1)
    assert "Error: dataset has no shard 9 — pass --shard 0..6" in proc.stdout and "Traceback" not in proc.stdout
    run = json.loads(rel("workflow", "runs", "broken", "-n", "1", "--json", check=0).stdout)[0]
    assert run["status"] == "failed" and run["error"] == "dataset has no shard 9 — pass --shard 0..6"


def test_timeout_is_enforced(rel):
    proc = rel("workflow", "run", "slowpoke", check=1)
    assert "timeout" in proc.stderr and "_mixflow_timeout" in proc.stderr
    run = json.loads(rel("workflow", "runs", "slowpoke", "--json", check=0).stdout)[0]
    assert run["status"] == "timeout" and "2s" in run["error"]
    for pid in (run["pid"], run["worker_pid"]):
        wait_for(lambda: gone(pid), timeout=10, what=f"pid {pid} to die")
    assert "working" in Path(run["log_path"]).read_text()


def test_missing_gpu_warns_and_runs(rel):
    proc = rel("workflow", "run", "wants-gpu", check=0)
    assert "ran anyway" in proc.stdout
    has_gpu = bool(shutil.which("nvidia-smi")) or Path("/dev/nvidia0").exists()
    warning = [l for l in proc.stdout.splitlines() if "GPU" in l and "a100" in l]
    if has_gpu:
        assert not warning, warning
    else:
        assert len(warning) == 1 and "CPU" in warning[0], proc.stdout
    run = json.loads(rel("workflow", "runs", "wants-gpu", "--json", check=0).stdout)[0]
    assert run["status"] == "completed" and run["output"] == "ok"


def test_statuses_move_forward_only(rel):
    """pending → running → completed, observed from outside; a finished run never changes again.

    The run sleeps 1.5 s so that polling every 20 ms must see it running: a run recorded as completed
    without ever being running fails here.
    """
    rel("workflow", "run", "sleeper", "--seconds", "1.5", "-d", check=0)
    reg = registry(rel)
    number = reg.runs("sleeper", 1)[0]["number"]
    seen = []
    end = time.monotonic() + 30
    while time.monotonic() < end:
        status = reg.run("sleeper", number)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status not in ("pending", "running"):
            break
        time.sleep(0.02)
    order = ["pending", "running", "completed"]
    run = reg.run("sleeper", number)
    files = {p.name: p.read_text() for p in Path(run["run_dir"]).iterdir()}
    assert seen[-2:] == ["running", "completed"] and seen == [s for s in order if s in seen], (seen, run, files)
    assert reg.set_status(reg.run("sleeper", number)["id"], "failed", error="late writer") is False
    assert reg.run("sleeper", number)["status"] == "completed"
