"""Table-driven bad input: argv → exit code → message fragment, through the real CLI.

One home is prepared per module (an existing dataset, secret, workflow and a finished run) and every
case runs against it. Every case must fail cleanly: the right exit code, `Error: <what> — <fix>` on
stderr for a user mistake, and never a traceback from mixtrain itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import Mix

FLOW = '''
from typing import Literal
from mixtrain import MixFlow, mixparam

class Greeter(MixFlow):
    """Says hello."""
    who: str = mixparam(description="Who to greet")
    epochs: int = mixparam(default=3, description="Epochs")
    lr: float = mixparam(default=0.001, description="Learning rate")
    verbose: bool = mixparam(default=False, description="Chatty")
    mode: Literal["fast", "slow"] = mixparam(default="fast", description="Speed")
    tags: list = mixparam(default=[], description="Tags")

    def run(self):
        return "hello " + self.who
'''

FILES = {
    "ok.csv": "a,b\n1,x\n2,y\n",
    "other.csv": "a,c\n1,x\n",
    "empty.csv": "",
    "header_only.csv": "a,b\n",
    "dupes.csv": "a,b,a\n1,2,3\n",
    "empty_name.csv": "a,,c\n1,2,3\n",
    "all_null.csv": "a,b\n1,\n2,\n",
    "data.xlsx": "not really excel",
    "notes.txt": "hello",
    "flow.py": FLOW,
    "no_flow.py": "x = 1\n",
    "two_flows.py": "from mixtrain import MixFlow\nclass A(MixFlow):\n    def run(self):\n        pass\nclass B(MixFlow):\n    def run(self):\n        pass\n",
    "syntax_error.py": "from mixtrain import MixFlow\nclass A(MixFlow)\n    def run(self):\n        pass\n",
    "import_error.py": "import no_such_module_for_mixtrain_tests\n",
    "raises_on_import.py": "raise RuntimeError('boom at import')\n",
    "bad.json": "{not json",
    "list.json": "[1, 2]",
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("badinput")
    for name, text in FILES.items():
        (root / name).write_text(text)
    cli = Mix(root)
    cli("dataset", "create", "existing", "ok.csv", check=0)
    cli("secret", "create", "EXISTING", "value1234", check=0)
    cli("workflow", "create", "flow.py", "--name", "greeter", check=0)
    cli("workflow", "run", "greeter", "--who", "x", check=0)
    return cli


# (id, argv, exit code, fragment of stderr)
CASES = [
    # -- datasets ------------------------------------------------------------------------------------
    ("ds-missing-file", ["dataset", "create", "d1", "--file", "missing.csv"], 1, "not found"),
    ("ds-empty-file", ["dataset", "create", "d1", "--file", "empty.csv"], 1, "is empty"),
    ("ds-header-only", ["dataset", "create", "d1", "--file", "header_only.csv"], 1, "no data rows"),
    ("ds-duplicate-columns", ["dataset", "create", "d1", "--file", "dupes.csv"], 1, "duplicate column names: a"),
    ("ds-empty-column-name", ["dataset", "create", "d1", "--file", "empty_name.csv"], 1, "empty column names"),
    ("ds-all-null-column", ["dataset", "create", "d1", "--file", "all_null.csv"], 1, "no values: b"),
    ("ds-unknown-extension", ["dataset", "create", "d1", "--file", "data.xlsx"], 1, "unsupported file type '.xlsx'"),
    ("ds-bad-name", ["dataset", "create", "Bad.Name", "--file", "ok.csv"], 1, "invalid dataset name"),
    ("ds-existing-name", ["dataset", "create", "existing", "--file", "ok.csv"], 1, "already exists"),
    ("ds-two-sources", ["dataset", "create", "d1", "ok.csv", "--file", "ok.csv"], 1, "exactly one source"),
    ("ds-no-source", ["dataset", "create", "d1"], 1, "exactly one source"),
    ("ds-append-mismatch", ["dataset", "append", "existing", "--file", "other.csv"], 1, "do not match"),
    ("ds-get-unknown", ["dataset", "get", "nope"], 1, "dataset 'nope' not found"),
    ("ds-head-unknown-version", ["dataset", "head", "existing", "--version", "12345"], 1, "has no version 12345"),
    ("ds-delete-unknown", ["dataset", "delete", "nope", "-y"], 1, "not found"),
    ("ds-delete-unconfirmed", ["dataset", "delete", "existing"], 1, "-y"),
    # -- secrets -------------------------------------------------------------------------------------
    ("secret-get-unknown", ["secret", "get", "NOPE"], 1, "secret 'NOPE' not found"),
    ("secret-create-existing", ["secret", "create", "EXISTING", "other"], 1, "already exists"),
    ("secret-set-existing-no-update", ["secret", "set", "EXISTING", "other"], 1, "--update"),
    ("secret-bad-name-dash", ["secret", "create", "bad-name", "v"], 1, "invalid secret name"),
    ("secret-bad-name-digit", ["secret", "create", "1ABC", "v"], 1, "invalid secret name"),
    ("secret-empty-value", ["secret", "create", "EMPTY_ONE", ""], 1, "shorter than 4 characters"),
    ("secret-short-value", ["secret", "create", "SHORT_ONE", "abc"], 1, "shorter than 4 characters"),
    ("secret-reserved-name", ["secret", "create", "PATH", "/evil/bin"], 1, "would replace a variable runs depend on"),
    (
        "secret-reserved-prefix",
        ["secret", "create", "MIXTRAIN_HOME", "/elsewhere"],
        1,
        "would replace a variable runs depend on",
    ),
    ("secret-delete-unknown", ["secret", "delete", "NOPE", "-y"], 1, "not found"),
    # -- workflow create -----------------------------------------------------------------------------
    ("wf-missing-file", ["workflow", "create", "missing.py", "--name", "w1"], 1, "not found"),
    ("wf-not-python", ["workflow", "create", "notes.txt", "--name", "w1"], 1, "not a Python file"),
    ("wf-no-mixflow", ["workflow", "create", "no_flow.py", "--name", "w1"], 1, "found 0"),
    ("wf-two-mixflows", ["workflow", "create", "two_flows.py", "--name", "w1"], 1, "found 2 (A, B)"),
    (
        "wf-bad-entrypoint",
        ["workflow", "create", "two_flows.py", "--name", "w1", "--entrypoint", "C"],
        1,
        "no MixFlow class named 'C'",
    ),
    ("wf-syntax-error", ["workflow", "create", "syntax_error.py", "--name", "w1"], 1, "SyntaxError"),
    (
        "wf-import-error",
        ["workflow", "create", "import_error.py", "--name", "w1"],
        1,
        "no_such_module_for_mixtrain_tests",
    ),
    ("wf-raises-on-import", ["workflow", "create", "raises_on_import.py", "--name", "w1"], 1, "boom at import"),
    ("wf-existing-name", ["workflow", "create", "flow.py", "--name", "greeter"], 1, "already exists"),
    ("wf-bad-name", ["workflow", "create", "flow.py", "--name", "My Flow"], 1, "invalid workflow name"),
    ("wf-update-unknown", ["workflow", "update", "nope", "flow.py"], 1, "not found"),
    # -- workflow run: inputs --------------------------------------------------------------------------
    ("run-unknown-workflow", ["workflow", "run", "nope", "--who", "x"], 1, "workflow 'nope' not found"),
    ("run-unknown-input", ["workflow", "run", "greeter", "--who", "x", "--whom", "y"], 1, "available: --who, --epochs"),
    ("run-missing-required", ["workflow", "run", "greeter"], 1, "missing required input --who"),
    (
        "run-bad-int",
        ["workflow", "run", "greeter", "--who", "x", "--epochs", "three"],
        1,
        "--epochs: expected an integer, got 'three'",
    ),
    ("run-int-not-float", ["workflow", "run", "greeter", "--who", "x", "--epochs", "2.5"], 1, "expected an integer"),
    (
        "run-bad-float",
        ["workflow", "run", "greeter", "--who", "x", "--lr", "fast"],
        1,
        "--lr: expected a number, got 'fast'",
    ),
    (
        "run-bad-choice",
        ["workflow", "run", "greeter", "--who", "x", "--mode", "medium"],
        1,
        "'medium' is not one of fast, slow",
    ),
    (
        "run-bad-bool",
        ["workflow", "run", "greeter", "--who", "x", "--verbose=maybe"],
        1,
        "--verbose: expected true or false",
    ),
    ("run-negated-bool-value", ["workflow", "run", "greeter", "--who", "x", "--no-verbose=true"], 1, "takes no value"),
    (
        "run-bad-list",
        ["workflow", "run", "greeter", "--who", "x", "--tags", '{"a": 1}'],
        1,
        "--tags: expected a JSON list",
    ),
    ("run-malformed-json", ["workflow", "run", "greeter", "-i", '{"who": '], 1, "invalid JSON"),
    ("run-malformed-json-file", ["workflow", "run", "greeter", "--config", "bad.json"], 1, "invalid JSON"),
    ("run-json-not-object", ["workflow", "run", "greeter", "-i", "list.json"], 1, "expected a JSON object"),
    (
        "run-json-missing-file",
        ["workflow", "run", "greeter", "-i", "nofile.json"],
        1,
        "neither a JSON object nor a file",
    ),
    (
        "run-json-unknown-key",
        ["workflow", "run", "greeter", "-i", '{"who": "x", "whom": 1}'],
        1,
        "unknown input --whom",
    ),
    ("run-flag-without-value", ["workflow", "run", "greeter", "--who"], 1, "--who needs a value"),
    ("run-positional", ["workflow", "run", "greeter", "stray"], 1, "unexpected argument 'stray'"),
    # -- workflow runs -------------------------------------------------------------------------------
    ("cancel-finished-run", ["workflow", "cancel", "greeter", "1"], 1, "already completed"),
    ("cancel-unknown-run", ["workflow", "cancel", "greeter", "99"], 1, "run #99 of workflow 'greeter' not found"),
    ("logs-unknown-run", ["workflow", "logs", "greeter", "99"], 1, "run #99 of workflow 'greeter' not found"),
    ("logs-unknown-workflow", ["workflow", "logs", "nope", "1"], 1, "workflow 'nope' not found"),
    ("runs-unknown-workflow", ["workflow", "runs", "nope"], 1, "not found"),
    ("get-unknown-workflow", ["workflow", "get", "nope"], 1, "not found"),
    ("delete-unknown-workflow", ["workflow", "delete", "nope", "-y"], 1, "not found"),
    # -- usage errors (click): exit 2 -------------------------------------------------------------------
    ("usage-unknown-command", ["nosuchcommand"], 2, "No such command 'nosuchcommand'"),
    ("usage-unknown-subcommand", ["dataset", "nosuch"], 2, "No such command 'nosuch'"),
    ("usage-missing-argument", ["dataset", "create"], 2, "Missing argument 'NAME'"),
    ("usage-rows-below-min", ["dataset", "head", "x", "-n", "0"], 2, "-n"),
    ("usage-rows-not-int", ["dataset", "head", "x", "-n", "abc"], 2, "'abc' is not a valid integer"),
    ("usage-missing-name-option", ["workflow", "create", "f.py"], 2, "Missing option '--name'"),
    ("usage-runs-limit-zero", ["workflow", "runs", "x", "-n", "0"], 2, "-n"),
    ("usage-run-number-not-int", ["workflow", "logs", "x", "notanumber"], 2, "'notanumber' is not a valid integer"),
    ("usage-missing-run-number", ["workflow", "cancel", "x"], 2, "Missing argument 'RUN'"),
    ("usage-secret-get-no-name", ["secret", "get"], 2, "Missing argument 'NAME'"),
    ("usage-unknown-option", ["--no-such-option"], 2, "No such option '--no-such-option'"),
    ("usage-unknown-dataset-option", ["dataset", "list", "--jsn"], 2, "Did you mean '--json'?"),
    # -- models (skipped until the model commands exist) ------------------------------------------------
    ("model-get-unknown", ["model", "get", "nope"], 1, "not found"),
    ("model-run-unknown", ["model", "run", "nope", "--inputs", '{"image": "x.png", "prompt": "hi"}'], 1, "not found"),
]


# Runs the CLI's entry point (`mixtrain.cli.main:main`, what the `mixtrain` script calls) once per case
# inside ONE child process, so the table pays Python's and the libraries' start-up once instead of
# 60 times. Each case still gets fresh argv, its own stdout/stderr and its exit status; a few cases
# are re-run below through the installed script to show both paths agree.
DRIVER = """
import contextlib, io, json, sys, traceback
from mixtrain.cli.main import main
results = {}
for case_id, argv in json.load(open(sys.argv[1])):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["mixtrain", *argv]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # what the interpreter would print for an escaping exception
            traceback.print_exc()
            code = 1
    results[case_id] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
sys.__stdout__.write(json.dumps(results))
"""


@pytest.fixture(scope="module")
def results(bad):
    import json

    cases = [(c[0], c[1]) for c in CASES]
    (bad.cwd / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, "cases.json"],
        cwd=bad.cwd,
        env=bad.env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads(proc.stdout)
    return {k: subprocess.CompletedProcess([], v["code"], v["stdout"], v["stderr"]) for k, v in raw.items()}


@pytest.mark.parametrize("case_id,argv,code,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(results, case_id, argv, code, fragment):
    proc = results[case_id]
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode} != {code}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert fragment in proc.stderr, f"{fragment!r} not in stderr:\n{proc.stderr}"
    # The user's own traceback may be shown for a broken workflow file, never mixtrain's internals.
    assert "site-packages" not in out and "mixtrain/workflows" not in out and "mixtrain/cli" not in out, out
    if argv[1:2] != ["create"] or argv[0] != "workflow":
        assert "Traceback" not in out, out
    error_lines = [l for l in proc.stderr.splitlines() if l.startswith("Error: ")]
    assert len(error_lines) == 1, proc.stderr
    if code == 2:  # click's own format: a usage line, then "Error: <what>"
        assert "Usage: mixtrain" in proc.stderr, proc.stderr
        return
    assert " — " in error_lines[0], f"no fix given: {error_lines[0]}"
    assert error_lines[0].count(" — ") == 1, f"fix given twice: {error_lines[0]}"


SAMPLE = [
    "usage-rows-not-int",
    "ds-all-null-column",
    "secret-get-unknown",
    "wf-two-mixflows",
    "wf-syntax-error",
    "run-bad-choice",
    "cancel-finished-run",
]


@pytest.mark.parametrize("case_id", SAMPLE)
def test_installed_script_agrees(bad, results, case_id):
    argv = next(c[1] for c in CASES if c[0] == case_id)
    proc = bad(*argv, timeout=120, input="")
    assert (proc.returncode, proc.stderr, proc.stdout) == (
        results[case_id].returncode,
        results[case_id].stderr,
        results[case_id].stdout,
    )


def test_bad_input_table_is_big_enough():
    assert len(CASES) >= 20


def test_failed_creates_leave_nothing(bad):
    """After all the rejected creates above, only the fixtures exist."""
    import json

    datasets = json.loads(bad("dataset", "list", "--json", check=0).stdout)
    assert [d["name"] for d in datasets] == ["existing"]
    workflows = json.loads(bad("workflow", "list", "--json", check=0).stdout)
    assert [w["name"] for w in workflows] == ["greeter"]
    assert sorted(p.name for p in (Path(bad.env["MIXTRAIN_HOME"]) / "workflows").iterdir()) == ["greeter"]


def test_syntax_error_points_at_the_users_line(bad):
    proc = bad("workflow", "create", "syntax_error.py", "--name", "w2", check=1)
    assert "syntax_error.py" in proc.stderr and "line 2" in proc.stderr
    assert "inspect_flow" not in proc.stderr and "importlib" not in proc.stderr


def test_import_error_shows_only_the_users_frames(bad):
    proc = bad("workflow", "create", "raises_on_import.py", "--name", "w2", check=1)
    assert 'raises_on_import.py", line 1' in proc.stderr
    assert (
        "inspect_flow" not in proc.stderr and "loader.py" not in proc.stderr and "frozen importlib" not in proc.stderr
    )
