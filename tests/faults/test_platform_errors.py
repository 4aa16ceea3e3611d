"""§2: a failure of the platform itself is the run's recorded error, shown by `workflow run/runs/logs`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.faults import clean_error

FLOW = """
from mixtrain import MixFlow

class Hello(MixFlow):
    def run(self, x: int = 1):
        print("hello from the workflow", flush=True)
        return x
"""


def _break_key_garbage(home: Path):
    (home / "secret.key").write_text("not-a-fernet-key\n")


def _break_key_empty(home: Path):
    (home / "secret.key").write_bytes(b"")


def _break_key_directory(home: Path):
    (home / "secret.key").unlink()
    (home / "secret.key").mkdir()


def _break_key_missing(home: Path):
    (home / "secret.key").unlink()


def _break_source(home: Path):
    shutil.rmtree(home / "workflows" / "hello" / "v1")


CASES = {
    "garbage key": (_break_key_garbage, "secret.key does not hold a valid key"),
    "empty key": (_break_key_empty, "secret.key is empty"),
    "key is a directory": (_break_key_directory, "secret.key is a directory"),
    "key missing, secrets stored": (_break_key_missing, "secret.key is missing but 1 secret(s) are stored"),
    "workflow source gone": (_break_source, "the stored file of workflow 'hello' version 1 is missing"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_platform_failure_is_the_runs_error(fmix, case):
    breaker, needle = CASES[case]
    (fmix.root / "hello.py").write_text(FLOW)
    fmix("workflow", "create", "hello.py", "--name", "hello", check=0)
    fmix("secret", "set", "API_TOKEN", input="tok-123456", check=0)
    breaker(fmix.home)

    line = clean_error(fmix("workflow", "run", "hello"), "run #1 of hello failed", needle)
    assert "died without reporting" not in line and "SIGKILL" not in line
    run = json.loads(fmix("workflow", "runs", "hello", "--json", check=0).stdout)[0]
    assert run["status"] == "failed" and needle in run["error"], run
    log = fmix("workflow", "logs", "hello", "1", check=0)
    assert needle in log.stdout and "no log yet" not in log.stdout + log.stderr
    assert "hello from the workflow" not in log.stdout
    assert "Traceback" not in log.stdout


def test_secrets_whose_key_is_lost_can_be_listed_and_deleted_then_runs_work(fmix):
    """The way out the "key missing" error names must work: list, delete, then run again."""
    (fmix.root / "hello.py").write_text(FLOW)
    fmix("workflow", "create", "hello.py", "--name", "hello", check=0)
    fmix("secret", "set", "API_TOKEN", input="tok-123456", check=0)
    (fmix.home / "secret.key").unlink()
    assert "API_TOKEN" in fmix("secret", "list", check=0).stdout
    fmix("secret", "delete", "API_TOKEN", "-y", check=0)
    assert "hello from the workflow" in fmix("workflow", "run", "hello", check=0).stdout
