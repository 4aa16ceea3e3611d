"""§1: a run outlives its supervisor (SIGKILL): the worker keeps writing its log, finishes, records its result."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from harness import Mix, gone, registry, wait_for

SECRET = "sk-multi-0123456789"

FLOWS = {
    "ticker.py": """
import os, time
from mixtrain import MixFlow

class Ticker(MixFlow):
    def run(self, seconds: int = 6, fail: bool = False):
        for i in range(seconds):
            print(f"tick {i}", flush=True)
            time.sleep(1)
        if fail:
            raise RuntimeError("failed after the ticks")
        return {"ticks": seconds}
""",
    "slow.py": """
import time
from mixtrain import MixFlow

class Slow(MixFlow):
    _mixflow_timeout = 4

    def run(self):
        for i in range(120):
            print(f"still working {i}", flush=True)
            time.sleep(0.5)
""",
    "chatty.py": '''
import os, sys, time
from mixtrain import MixFlow

class Chatty(MixFlow):
    """Waits for its supervisor to die, then writes far more than a pipe holds (64 KiB), secret included."""
    def run(self, kb: int = 512):
        print("ready", flush=True)
        flag = os.path.join(os.environ["MIXTRAIN_RUN_DIR"], "go")
        while not os.path.exists(flag):
            time.sleep(0.05)
        line = "x" * 1023 + "\\n"
        for _ in range(kb):
            sys.stdout.write(line)
        print("secret:", os.environ["API_TOKEN"], flush=True)
        print("done writing", flush=True)
        return {"kb": kb}
''',
}


@pytest.fixture(scope="module")
def sup(tmp_path_factory):

    root = tmp_path_factory.mktemp("supervisor")
    cli = Mix(root)
    for name, text in FLOWS.items():
        (root / name).write_text(text)
        cli("workflow", "create", name, "--name", name[:-3], check=0)
    cli("secret", "set", "API_TOKEN", input=SECRET, check=0)
    return cli


def _start(cli, name, *args):
    cli("workflow", "run", name, *args, "-d", check=0)
    reg = registry(cli)
    number = reg.runs(name, 1)[0]["number"]
    run = wait_for(
        lambda: (r := reg.run(name, number))["status"] == "running" and r["worker_pid"] and r, what=f"{name} running"
    )
    return reg, run


def _kill_supervisor(run):
    os.kill(run["pid"], signal.SIGKILL)
    wait_for(lambda: gone(run["pid"]), timeout=10, what="the supervisor to die")


def test_printing_run_completes_after_supervisor_sigkill(sup):
    reg, run = _start(sup, "ticker", "--seconds", "6")
    log = Path(run["log_path"])
    wait_for(lambda: "tick 1" in log.read_text(), what="two ticks")
    _kill_supervisor(run)
    assert not gone(run["worker_pid"]), "the worker died with its supervisor"
    final = wait_for(
        lambda: (r := reg.run("ticker", run["number"]))["status"] not in ("pending", "running") and r,
        timeout=60,
        what="run end",
    )
    assert final["status"] == "completed", final
    assert final["output"] == {"ticks": 6}
    assert json.loads((Path(run["run_dir"]) / "output.json").read_text()) == {"ticks": 6}
    text = wait_for(lambda: "■ run #" in (t := log.read_text()) and t, timeout=15, what="closing line")
    assert "tick 5" in text, text  # lines written after the supervisor died reached the log
    assert f"■ run #{run['number']} completed" in text
    shown = sup("workflow", "runs", "ticker", "--json", check=0).stdout
    assert json.loads(shown)[0]["status"] == "completed"


def test_failing_run_records_its_own_error_after_supervisor_sigkill(sup):
    reg, run = _start(sup, "ticker", "--seconds", "3", "--fail")
    _kill_supervisor(run)
    final = wait_for(
        lambda: (r := reg.run("ticker", run["number"]))["status"] not in ("pending", "running") and r,
        timeout=60,
        what="run end",
    )
    assert final["status"] == "failed" and final["error"] == "RuntimeError: failed after the ticks", final
    log = wait_for(lambda: "■ run #" in (t := Path(run["log_path"]).read_text()) and t, timeout=15, what="closing line")
    assert "tick 2" in log and "failed after the ticks" in log


def test_output_larger_than_a_pipe_after_supervisor_sigkill_is_logged_and_redacted(sup):
    reg, run = _start(sup, "chatty", "--kb", "512")
    log = Path(run["log_path"])
    wait_for(lambda: "ready" in log.read_text(), what="ready")
    _kill_supervisor(run)
    (Path(run["run_dir"]) / "go").touch()
    final = wait_for(
        lambda: (r := reg.run("chatty", run["number"]))["status"] not in ("pending", "running") and r,
        timeout=60,
        what="run end",
    )
    assert final["status"] == "completed", final
    text = wait_for(lambda: "done writing" in (t := log.read_text()) and t, timeout=15, what="the whole output")
    assert text.count("x" * 1023) == 512
    assert "secret: ***" in text and SECRET not in text


def test_worker_death_after_supervisor_death_is_reported(sup):
    reg, run = _start(sup, "ticker", "--seconds", "30")
    _kill_supervisor(run)
    os.kill(run["worker_pid"], signal.SIGKILL)
    wait_for(lambda: gone(run["worker_pid"]), timeout=10, what="the worker to die")
    assert reg.run("ticker", run["number"])["status"] == "running"  # a read changes nothing...
    shown = json.loads(sup("workflow", "runs", "ticker", "--json", check=0).stdout)[0]  # ...what users see reconciles
    assert shown["status"] == "failed" and "died" in shown["error"], shown
    final = reg.run("ticker", run["number"])
    assert final["status"] == "failed" and "died" in final["error"], final


def test_time_limit_still_enforced_after_supervisor_sigkill(sup):
    reg, run = _start(sup, "slow")
    _kill_supervisor(run)
    final = wait_for(
        lambda: (r := reg.run("slow", run["number"]))["status"] not in ("pending", "running") and r,
        timeout=60,
        what="run end",
    )
    assert final["status"] == "timeout" and "4s" in final["error"], final
    wait_for(lambda: gone(run["worker_pid"]), timeout=20, what="the worker to be stopped")
    log = wait_for(lambda: "■ run #" in (t := Path(run["log_path"]).read_text()) and t, timeout=15, what="closing line")
    assert "timed out after 4s" in log and f"■ run #{run['number']} timeout" in log
