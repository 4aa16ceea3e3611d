"""The workflow engine through the real CLI: both declaration styles, input forms, runs, logs, cancel.

One home per module holds the registered workflows; each test makes its own runs. Nothing is mocked:
every run goes through the runner, the detached supervisor and the forked worker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import Mix, gone, registry, wait_for

ATTR_FLOW = '''
import enum
import os
from typing import Literal

from mixtrain import MixFlow, mixparam


class Speed(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Greeter(MixFlow):
    """Greets someone and reports what it received."""

    who: str = mixparam(description="Who to greet")
    epochs: int = mixparam(default=3, description="How many epochs")
    learning_rate: float = mixparam(default=2e-5, description="Step size")
    verbose: bool = mixparam(default=False, description="Print more")
    mode: Literal["fast", "slow"] = mixparam(default="fast", description="Pace of work")
    speed: Speed = mixparam(default=Speed.FAST, description="An enum input")
    tags: list = mixparam(default=[], description="Labels")
    extra: dict = mixparam(default={}, description="Anything else")

    def run(self):
        print(f"hello {self.who}", flush=True)
        return {
            "who": self.who, "epochs": self.epochs, "learning_rate": self.learning_rate, "verbose": self.verbose,
            "mode": self.mode, "speed": repr(self.speed), "tags": self.tags, "extra": self.extra,
            "types": {k: type(getattr(self, k)).__name__ for k in ("epochs", "learning_rate", "verbose", "tags", "extra")},
            "env": {k: os.environ.get(k) for k in ("MIXTRAIN_RUN_ID", "MIXTRAIN_WORKFLOW", "MIXTRAIN_RUN_DIR", "MIXTRAIN_RUN_NUMBER")},
        }
'''

SIG_FLOW = '''
import enum

from mixtrain import MixFlow, mixparam


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Finetune(MixFlow):
    """Signature-style inputs, like the spec's fine-tune."""

    def run(
        self,
        dataset_name: str,
        output_model_name: str = mixparam(description="Name for fine-tuned model"),
        num_epochs: int = 3,
        learning_rate: float = 2e-5,
        use_flash_attention: bool = True,
        batch_size: int = mixparam(default=2, description="Batch size per GPU"),
        color: Color = Color.RED,
        layers: list[int] | None = None,
        options: dict | None = None,
    ):
        return {
            "dataset_name": dataset_name, "output_model_name": output_model_name, "num_epochs": num_epochs,
            "learning_rate": learning_rate, "use_flash_attention": use_flash_attention, "batch_size": batch_size,
            "color": repr(color), "layers": layers, "options": options,
        }
'''

SLEEPY_FLOW = """
import os
import subprocess
import time

from mixtrain import MixFlow


class Sleepy(MixFlow):
    def run(self, seconds: float = 60.0):
        # A grandchild that even ignores SIGTERM: cancel must still take it down with the group.
        child = subprocess.Popen(["bash", "-c", "trap '' TERM; exec sleep 300"])
        with open(os.path.join(os.environ["MIXTRAIN_RUN_DIR"], "grandchild.pid"), "w") as fh:
            fh.write(str(child.pid))
        print("sleeping", flush=True)
        time.sleep(seconds)
        return "woke up"
"""

SLOWPRINT_FLOW = """
import time
from mixtrain import MixFlow

class SlowPrint(MixFlow):
    def run(self, lines: int = 3):
        for i in range(lines):
            print(f"line {i}", flush=True)
            time.sleep(0.3)
        return lines
"""


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflows")
    for name, text in {
        "greeter.py": ATTR_FLOW,
        "finetune.py": SIG_FLOW,
        "sleepy.py": SLEEPY_FLOW,
        "slowprint.py": SLOWPRINT_FLOW,
    }.items():
        (root / name).write_text(text)
    cli = Mix(root)
    cli("workflow", "create", "greeter.py", "--name", "greeter", "--description", "Attribute style", check=0)
    cli("workflow", "create", "finetune.py", "--name", "finetune", check=0)
    cli.root = root
    return cli


def last_run(cli, name) -> dict:
    """The newest run, as `mixtrain workflow runs NAME -n 1 --json` prints it."""
    return json.loads(cli("workflow", "runs", name, "-n", "1", "--json", check=0).stdout)[0]


def newest(cli, name) -> dict:
    """The newest run read from the metadata DB in this process (a CLI call costs ~0.5 s)."""
    return registry(cli).runs(name, 1)[0]


# -- registration and help --------------------------------------------------------------------------
def test_both_styles_register(wf):
    listed = {w["name"]: w for w in json.loads(wf("workflow", "list", "--json", check=0).stdout)}
    assert set(listed) == {"greeter", "finetune"}
    assert listed["greeter"]["version"] == 1 and listed["greeter"]["description"] == "Attribute style"
    human = wf("workflow", "list", check=0).stdout
    assert "greeter" in human and "finetune" in human


@pytest.mark.parametrize(
    "name,rows",
    [
        (
            "greeter",
            [
                ("--who", "required", "str", "Who to greet"),
                ("--epochs", "3", "int", "How many epochs"),
                ("--learning_rate", "2e-05", "float", "Step size"),
                ("--verbose", "False", "bool", "Print more"),
                ("--mode", "'fast'", "str (fast|slow)", "Pace of work"),
                ("--speed", "'fast'", "str (fast|slow)", "An enum input"),
                ("--tags", "[]", "list", "Labels"),
                ("--extra", "{}", "dict", "Anything else"),
            ],
        ),
        (
            "finetune",
            [
                ("--dataset_name", "required", "str", ""),
                ("--output_model_name", "required", "str", "Name for fine-tuned model"),
                ("--num_epochs", "3", "int", ""),
                ("--use_flash_attention", "True", "bool", ""),
                ("--batch_size", "2", "int", "Batch size per GPU"),
                ("--color", "'red'", "str (red|blue)", ""),
                ("--layers", "None", "list", ""),
            ],
        ),
    ],
)
def test_run_help_lists_inputs(wf, name, rows):
    for argv in [("workflow", "run", name, "--help" if name == "greeter" else "-h")]:
        out = wf(*argv, check=0).stdout
        lines = out.splitlines()
        for flag, default, typ, desc in rows:
            line = next((l for l in lines if f"│ {flag} " in l), None)
            assert line is not None, f"{flag} missing from:\n{out}"
            cells = [c.strip() for c in line.split("│")[1:-1]]
            assert cells == [flag, default, typ, desc], cells
        assert "Example:" in out
        required = [r[0] for r in rows if r[1] == "required"]
        example = out.split("Example:")[1]
        assert all(flag in example for flag in required), example
    if name == "greeter":
        assert "Greets someone" in out


def test_get_shows_inputs_and_versions(wf):
    info = json.loads(wf("workflow", "get", "finetune", "--json", check=0).stdout)
    assert info["entrypoint"] == "Finetune" and info["version"] == 1 and len(info["versions"]) == 1
    assert [i["name"] for i in info["inputs"]][:3] == ["dataset_name", "output_model_name", "num_epochs"]
    human = wf("workflow", "get", "finetune", check=0).stdout
    assert "Finetune" in human and "--dataset_name" in human


# -- running ----------------------------------------------------------------------------------------
def test_attribute_style_run_with_typed_inputs(wf):
    proc = wf(
        "workflow",
        "run",
        "greeter",
        "--who",
        "ada",
        "--epochs=5",
        "--learning-rate",
        "0.5",
        "--verbose",
        "--mode",
        "slow",
        "--speed=slow",
        "--tags",
        '["a", "b"]',
        "--extra",
        '{"k": 1}',
        check=0,
    )
    assert "hello ada" in proc.stdout
    assert "completed" in proc.stderr
    run = last_run(wf, "greeter")
    assert run["status"] == "completed" and run["version"] == 1
    out = run["output"]
    assert out["who"] == "ada" and out["epochs"] == 5 and out["learning_rate"] == 0.5 and out["verbose"] is True
    assert out["mode"] == "slow" and out["speed"] == "<Speed.SLOW: 'slow'>"
    assert out["tags"] == ["a", "b"] and out["extra"] == {"k": 1}
    assert out["types"] == {
        "epochs": "int",
        "learning_rate": "float",
        "verbose": "bool",
        "tags": "list",
        "extra": "dict",
    }
    assert run["inputs"] == {
        "who": "ada",
        "epochs": 5,
        "learning_rate": 0.5,
        "verbose": True,
        "mode": "slow",
        "speed": "slow",
        "tags": ["a", "b"],
        "extra": {"k": 1},
    }
    # The run's environment and its folder.
    run_dir = Path(run["run_dir"])
    assert out["env"] == {
        "MIXTRAIN_RUN_ID": str(run["id"]),
        "MIXTRAIN_WORKFLOW": "greeter",
        "MIXTRAIN_RUN_DIR": str(run_dir),
        "MIXTRAIN_RUN_NUMBER": str(run["number"]),
    }
    assert run_dir.is_dir() and Path(run["log_path"]).parent == run_dir
    assert "hello ada" in Path(run["log_path"]).read_text()
    assert json.loads((run_dir / "output.json").read_text()) == out
    assert run["started_at"] and run["finished_at"] and run["duration"] is not None


def test_signature_style_run(wf):
    wf(
        "workflow",
        "run",
        "finetune",
        "--dataset_name",
        "my-vlm-data",
        "--output-model-name",
        "my-model",
        "--num_epochs",
        "4",
        "--use_flash_attention",
        "false",
        "--color",
        "blue",
        "--layers",
        "[1, 2]",
        check=0,
    )
    out = newest(wf, "finetune")["output"]
    assert out == {
        "dataset_name": "my-vlm-data",
        "output_model_name": "my-model",
        "num_epochs": 4,
        "learning_rate": 2e-5,
        "use_flash_attention": False,
        "batch_size": 2,
        "color": "<Color.BLUE: 'blue'>",
        "layers": [1, 2],
        "options": None,
    }


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["--no-use-flash-attention"], False),
        (["--use-flash-attention", "no"], False),
    ],
    ids=["no-x", "no"],
)
def test_bool_forms(wf, flags, expected):
    """Through the CLI end to end; every other form is covered in tests/unit/test_workflow_inputs.py."""
    wf("workflow", "run", "finetune", "--dataset_name", "d", "--output_model_name", "m", *flags, "-d", check=0)
    run = newest(wf, "finetune")  # inputs are typed and stored before the run starts
    assert run["inputs"]["use_flash_attention"] is expected


def test_json_inputs_and_flag_override(wf):
    cfg = wf.root / "config.json"
    cfg.write_text(
        json.dumps({"dataset-name": "from-file", "output_model_name": "m", "num_epochs": 9, "options": {"a": [1]}})
    )
    wf("workflow", "run", "finetune", "--config", str(cfg), "--num-epochs", "2", check=0)
    run = newest(wf, "finetune")
    assert run["inputs"]["dataset_name"] == "from-file"
    assert run["inputs"]["num_epochs"] == 2, "a flag overrides the JSON"
    assert run["inputs"]["options"] == {"a": [1]}

    wf(
        "workflow",
        "run",
        "finetune",
        "-i",
        '{"dataset_name": "inline", "output_model_name": "m", "layers": [3]}',
        "-d",
        check=0,
    )
    assert newest(wf, "finetune")["inputs"]["layers"] == [3]
    wf("workflow", "run", "finetune", "-c", str(cfg), "--input-json", '{"num_epochs": 1}', "-d", check=0)
    assert newest(wf, "finetune")["inputs"]["num_epochs"] == 1  # later JSON wins over earlier JSON


def test_detach_then_follow_logs(wf):
    wf("workflow", "create", "slowprint.py", "--name", "slowprint", check=0)
    t0 = time.monotonic()
    proc = wf("workflow", "run", "slowprint", "--lines", "4", "--detach", check=0)
    assert "started" in proc.stdout and time.monotonic() - t0 < 10
    number = newest(wf, "slowprint")["number"]
    assert newest(wf, "slowprint")["status"] in ("pending", "running")
    follow = wf("workflow", "logs", "slowprint", number, "-f", check=0)
    assert [l for l in follow.stdout.splitlines() if l.startswith("line ")] == [f"line {i}" for i in range(4)]
    assert follow.stdout.rstrip().endswith("completed")
    assert newest(wf, "slowprint")["status"] == "completed"
    plain = wf("workflow", "logs", "slowprint", number, check=0).stdout
    assert plain == follow.stdout


def test_runs_limit_and_table(wf):
    for who in ("one", "two"):
        wf("workflow", "run", "greeter", "--who", who, "-d", check=0)
    reg = registry(wf)
    wait_for(lambda: all(r["status"] == "completed" for r in reg.runs("greeter")), what="greeter runs to finish")
    rows = json.loads(wf("workflow", "runs", "greeter", "-n", "2", "--json", check=0).stdout)
    assert len(rows) == 2 and rows[0]["number"] > rows[1]["number"]
    assert [r["inputs"]["who"] for r in rows] == ["two", "one"]
    table = wf("workflow", "runs", "greeter", "-n", "1", check=0).stdout
    assert f"#{rows[0]['number']}" in table and f"#{rows[1]['number']} " not in table and "completed" in table
    assert "run" in table and "status" in table and "duration" in table


def test_cancel_kills_the_process_group_and_delete_is_refused_while_active(wf):
    wf("workflow", "create", "sleepy.py", "--name", "sleepy", check=0)
    wf("workflow", "run", "sleepy", "-d", check=0)
    reg = registry(wf)
    run = wait_for(
        lambda: (r := reg.runs("sleepy")[0])["status"] == "running" and r["worker_pid"] and r, what="running"
    )
    pid_file = Path(run["run_dir"]) / "grandchild.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="grandchild pid")
    grandchild = int(pid_file.read_text())
    assert not gone(grandchild)

    proc = wf("workflow", "delete", "sleepy", "-y", check=1)
    assert "active run" in proc.stderr and "cancel" in proc.stderr

    proc = wf("workflow", "cancel", "sleepy", run["number"], check=0)
    assert "cancelled" in proc.stdout
    for pid in (run["pid"], run["worker_pid"], grandchild):
        wait_for(lambda: gone(pid), timeout=15, what=f"pid {pid} to die")
    final = newest(wf, "sleepy")
    assert final["status"] == "cancelled" and final["finished_at"]
    assert "woke up" not in Path(final["log_path"]).read_text()

    wf("workflow", "delete", "sleepy", "-y", check=0)
    assert "sleepy" not in [w["name"] for w in json.loads(wf("workflow", "list", "--json", check=0).stdout)]
    assert not (Path(wf.env["MIXTRAIN_HOME"]) / "workflows" / "sleepy").exists()


def test_update_makes_version_2(wf):
    v2 = wf.root / "greeter_v2.py"
    v2.write_text(ATTR_FLOW.replace('print(f"hello {self.who}"', 'print(f"bonjour {self.who}"'))
    proc = wf("workflow", "update", "greeter", v2, check=0)
    assert "version 2" in proc.stdout
    info = json.loads(wf("workflow", "get", "greeter", "--json", check=0).stdout)
    assert info["version"] == 2 and [v["version"] for v in info["versions"]] == [1, 2]
    proc = wf("workflow", "run", "greeter", "--who", "zoe", check=0)
    assert "bonjour zoe" in proc.stdout
    assert newest(wf, "greeter")["version"] == 2
