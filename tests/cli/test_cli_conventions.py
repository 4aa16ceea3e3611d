"""CLI conventions: --version, fast --help that imports nothing heavy, exit codes and error format."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pandas", "pyarrow", "torch", "transformers", "pyiceberg", "axolotl")

# Runs the CLI's real entry point in-process with the given argv, then reports which heavy modules
# the process had imported by the time it exited.
PROBE = f"""
import json, sys
sys.argv = ["mixtrain", *json.loads(sys.argv[1])]
from mixtrain.cli.main import NOUNS, main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {set(HEAVY)!r})
nouns = sorted(m.rsplit(".", 1)[1] for m in sys.modules if m in {{f"mixtrain.cli.{{n}}" for n in NOUNS}})
sys.__stderr__.write("\\nPROBE " + json.dumps({{"code": code, "heavy": sorted({{m.split(".")[0] for m in heavy}}), "nouns": nouns}}) + "\\n")
"""


def _probe(env, *argv):
    import json

    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(argv))], capture_output=True, text=True, env=env, timeout=120
    )
    line = [l for l in proc.stderr.splitlines() if l.startswith("PROBE ")][-1]
    return json.loads(line[len("PROBE ") :]), proc


def test_version(mix):
    from mixtrain import __version__

    proc = mix("--version", check=0, real=True)
    assert proc.stdout.strip() == f"mixtrain {__version__}"
    alias = subprocess.run(
        [str(Path(sys.executable).parent / "mix"), "--version"], capture_output=True, text=True, env=mix.env, timeout=60
    )
    assert alias.returncode == 0 and alias.stdout == proc.stdout, "`mix` is the same command"


def test_no_args_shows_help(mix):
    proc = mix()
    assert proc.returncode in (0, 2)
    assert "dataset" in proc.stdout + proc.stderr and "workflow" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("dataset", "--help"),
        ("workflow", "--help"),
        ("secret", "--help"),
        ("model", "--help"),
        ("dataset", "list"),  # a real command reading every table's metadata still needs no PyArrow/pandas
        ("dataset", "get", "d"),
    ],
    ids=lambda a: " ".join(a),
)
def test_help_imports_nothing_heavy(mix, tmp_path, argv):
    if argv[0] == "dataset" and argv[1] in ("list", "get"):
        (tmp_path / "d.csv").write_text("prompt,response\nhi,there\n")
        mix("dataset", "create", "d", "--file", "d.csv", check=0)
    result, proc = _probe(mix.env, *argv)
    assert result["code"] in (0, None), proc.stderr
    allowed = {"pyiceberg"} if argv[0] == "dataset" and argv[1] in ("list", "get") else set()
    heavy = set(result["heavy"]) - allowed
    assert not heavy, f"`mixtrain {' '.join(argv)}` imported {sorted(heavy)}"
    if argv[1:] == ("list",):
        assert " d " in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("argv", "loaded"), [(("--help",), []), (("secret", "list"), ["secret"]), (("model", "--help"), ["model"])]
)
def test_nouns_load_on_use(mix, argv, loaded):
    """The root group imports a noun's module only when that noun runs; its help still lists them all."""
    result, proc = _probe(mix.env, *argv)
    assert result["code"] in (0, None), proc.stderr
    assert result["nouns"] == loaded
    if argv == ("--help",):
        assert "Usage" in proc.stdout
        for noun in ("dataset", "workflow", "model", "secret", "eval", "doctor", "ui", "config"):
            assert f" {noun} " in proc.stdout, noun


def test_unknown_noun_suggests_a_lazy_one(mix):
    proc = mix("modle")
    assert proc.returncode == 2 and "Did you mean 'model'?" in proc.stderr


def test_workflow_run_help_imports_nothing_heavy(mix, tmp_path):
    flow = tmp_path / "hello.py"
    flow.write_text(
        "from mixtrain import MixFlow\nclass Hello(MixFlow):\n    def run(self, who: str):\n        return who\n"
    )
    mix("workflow", "create", flow, "--name", "hello", check=0)
    result, proc = _probe(mix.env, "workflow", "run", "hello", "--help")
    assert result["code"] in (0, None), proc.stderr
    assert not result["heavy"], result["heavy"]
    assert "--who" in proc.stdout


def test_usage_error_exits_2_without_traceback(mix):
    """One through the installed script here; the rest are rows of tests/cli/test_cli_bad_input.py."""
    proc = mix("dataset", "create", real=True)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Usage:" in proc.stderr and "Missing argument 'NAME'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_user_error_format(mix):
    proc = mix("dataset", "get", "nope", check=1, real=True)
    assert proc.stderr.startswith("Error: ")
    what, sep, fix = proc.stderr.strip()[len("Error: ") :].partition(" — ")
    assert sep and what and fix, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_the_test_runner_forks_what_the_binary_prints(mix, tmp_path):
    """The harness forks most CLI calls from a server that imported the CLI once: each call must read
    exactly as the installed binary's (output, exit code, stdin; --help is test_help_imports_nothing_heavy's)
    and see nothing of an earlier call
    (an engine cached for a home, the environment, the cwd)."""
    (tmp_path / "d.csv").write_text("prompt,response\nhi,there\n")
    calls = [
        (("dataset", "list"), None),
        (("dataset", "create", "d", "--file", "d.csv"), None),
        (("dataset", "head", "d"), None),
        (("dataset", "delete", "d"), "y\n"),  # refused without a terminal, whatever stdin holds
        (("dataset", "get", "nope"), None),
        (("secret", "set", "tok"), "s3cret\n"),
        (("secret", "list", "--json"), None),
        (("config",), None),
        (("workflow", "runs"), None),
    ]
    other = tmp_path / "other"
    other.mkdir()

    def seen(proc, home):  # the same call in two homes, with random snapshot ids, a second apart
        texts = (
            re.sub(r"\d{4}-\d\d-\d\d[ T][\d:.+]+|\d{9,}", "N", t.replace(home, "HOME"))
            for t in (proc.stdout, proc.stderr)
        )
        return [proc.returncode, *texts]

    for args, stdin in calls:
        h1, h2 = str(tmp_path / "h1"), str(tmp_path / "h2")
        forked = mix(*args, input=stdin, env={"MIXTRAIN_HOME": h1})
        real = mix(*args, input=stdin, env={"MIXTRAIN_HOME": h2}, real=True)
        assert seen(forked, h1) == seen(real, h2), args
    # A store opened by one call is not reused by the next: a lost database is still found lost.
    (tmp_path / "h1" / "mixtrain.db").unlink()
    lost = mix("secret", "list", env={"MIXTRAIN_HOME": str(tmp_path / "h1")}, check=1)
    assert "mixtrain.db" in lost.stderr and "is missing" in lost.stderr
    # The cwd and environment are the call's own.
    assert mix("dataset", "create", "x", "--file", "d.csv", cwd=other, check=1).stderr.startswith("Error: ")
    assert mix("config", "--json", env={"MIXTRAIN_WAREHOUSE": "file:///w"}, check=0).stdout.count("file:///w") == 1
    assert "file:///w" not in mix("config", "--json", check=0).stdout
