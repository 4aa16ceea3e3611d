"""§7: odd files (symlink loops, FIFOs, devices, directories, dangling links) are bad rows like any
other; partial batches; multi-line secrets; a workflow file that starts a process at import."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import gone, wait_for
from harness.faults import clean_error


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(path)
    return path


def _loop(d: Path) -> Path:
    (d / "loop_a.png").symlink_to(d / "loop_b.png")
    (d / "loop_b.png").symlink_to(d / "loop_a.png")
    return d / "loop_a.png"


def _self_loop(d: Path) -> Path:
    (d / "self.png").symlink_to(d / "self.png")
    return d / "self.png"


def _dangling(d: Path) -> Path:
    (d / "dangling.png").symlink_to(d / "nowhere.png")
    return d / "dangling.png"


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "fifo.png")
    return d / "fifo.png"


def _device(d: Path) -> Path:
    (d / "device.png").symlink_to("/dev/zero")  # reading it never ends
    return d / "device.png"


def _directory(d: Path) -> Path:
    (d / "dir.png").mkdir()
    return d / "dir.png"


ODD = {
    "symlink loop": (_loop, "symlink loop"),
    "self symlink": (_self_loop, "symlink loop"),
    "dangling symlink": (_dangling, "broken symlink"),
    "fifo": (_fifo, "FIFO"),
    "device": (_device, "a device"),
    "directory": (_directory, "a directory"),
}


@pytest.fixture
def base_model(fmix):
    """A registered base model whose weights are never loaded: every case fails before that."""
    folder = fmix.root / "fake-llava"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llava"}')  # config only: register reads no weights
    fmix("model", "register", "base", "--base_model", str(folder), "--model_type", "llava", check=0)
    return fmix


@pytest.mark.parametrize("case", list(ODD))
def test_model_run_odd_image_is_one_line(base_model, case, tmp_path):
    make, needle = ODD[case]
    ref = make(tmp_path)
    clean_error(
        base_model("model", "run", "base", "--inputs", json.dumps({"image": str(ref), "prompt": "hi"}), timeout=120),
        needle,
    )


def test_verify_images_reports_odd_files_as_bad_rows(tmp_path):
    """The fine-tune's data check (also used under --on_bad_image skip): good rows pass, odd ones are listed."""
    from mixtrain.images import verify_images

    good = str(_png(tmp_path / "ok.png"))
    refs = [good] + [str(make(tmp_path)) for make, _ in ODD.values()] + [good]
    found, bad = verify_images(refs, tmp_path / "cache")
    assert list(found) == [good]
    assert [i for i, _, _ in bad] == list(range(1, len(ODD) + 1))
    for (_, _, reason), (_, needle) in zip(bad, ODD.values(), strict=True):
        assert needle in reason, reason


def test_inputs_file_with_only_bad_rows_reports_each_line(base_model, tmp_path):
    rows = [
        json.dumps({"image": str(_loop(tmp_path)), "prompt": "a"}),
        "",
        "{broken json",
        json.dumps({"image": str(_fifo(tmp_path)), "prompt": "b"}),
        json.dumps(["not", "an", "object"]),
    ]
    f = tmp_path / "rows.jsonl"
    f.write_text("\n".join(rows) + "\n")
    proc = base_model("model", "run", "base", "--inputs-file", str(f), timeout=120)
    clean_error(proc, "4 of 4 rows failed (lines 1, 3, 4, 5)")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 3, 4, 5]
    assert all("error" in r for r in records)
    assert "symlink loop" in records[0]["error"] and "invalid JSON" in records[1]["error"]
    assert "FIFO" in records[2]["error"] and "not a JSON object" in records[3]["error"]


def test_multi_line_secret_is_redacted_line_by_line(fmix):
    secret = "-----BEGIN KEY-----\nAAAAline-one-of-the-key\nBBBBline-two-of-the-key\n-----END KEY-----"
    (fmix.root / "pem.py").write_text("""
import os
from mixtrain import MixFlow

class Pem(MixFlow):
    def run(self):
        key = os.environ["PEM"]
        print("whole:", key, flush=True)
        for line in key.splitlines():
            print("line:", line, flush=True)
        raise ValueError("bad key line " + key.splitlines()[2])
""")
    fmix("workflow", "create", str(fmix.root / "pem.py"), "--name", "pem", check=0)
    fmix("secret", "set", "PEM", input=secret, check=0)
    fmix("workflow", "run", "pem")
    log = fmix("workflow", "logs", "pem", "1", check=0).stdout
    run = json.loads(fmix("workflow", "runs", "pem", "--json", check=0).stdout)[0]
    for line in secret.splitlines():
        assert line not in log, line
        assert line not in run["error"], line
    assert log.count("line: ***") == 4 and run["error"] == "ValueError: bad key line ***"


BG = """
import os, subprocess, sys
{start}
from mixtrain import MixFlow

class Bg(MixFlow):
    def run(self, x: int = 1):
        return x
"""
STARTS = {
    "child process": 'p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])\nopen(os.environ["BG_PID"], "w").write(str(p.pid))',
    "detached daemon": (
        "if os.fork() == 0:\n    os.setsid()\n    pid = os.fork()\n    if pid == 0:\n        import time; time.sleep(300)\n"
        '    open(os.environ["BG_PID"], "w").write(str(pid))\n    os._exit(0)\nos.wait()'
    ),
}


@pytest.mark.parametrize("case", list(STARTS))
def test_workflow_create_of_a_module_that_starts_a_process(fmix, case):
    pid_file = fmix.root / "bg.pid"
    fmix.env["BG_PID"] = str(pid_file)
    (fmix.root / "bg.py").write_text(BG.format(start=STARTS[case]))
    proc = fmix(
        "workflow", "create", str(fmix.root / "bg.py"), "--name", "bg", timeout=55
    )  # the bug: a false 60 s timeout
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the background pid"))
    wait_for(lambda: gone(pid), timeout=10, what="the background process to be ended")


@pytest.mark.e2e
def test_inputs_file_answers_good_rows_and_reports_the_bad_one(fmix, tmp_path, tiny_models):
    """A real tiny LLaVA: the good rows get answers, the odd one an error record with its line; exit 1."""
    fmix("model", "register", "tiny", "--base_model", str(tiny_models["llava"]), "--model_type", "llava", check=0)
    good = str(_png(tmp_path / "ok.png"))
    rows = [
        {"image": good, "prompt": "colour?"},
        {"image": str(_loop(tmp_path)), "prompt": "colour?"},
        {"image": good, "prompt": "shape?"},
    ]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    proc = fmix(
        "model",
        "run",
        "tiny",
        "--inputs-file",
        str(f),
        "-o",
        str(out),
        "--config",
        '{"max_new_tokens": 3}',
        timeout=900,
    )
    clean_error(proc, "row 2 of", "line 2", "symlink loop", "the other 2 row(s) were answered")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    assert "error" not in records[0] and "error" not in records[2]
    assert isinstance(records[0]["generated_text"], str) and isinstance(records[2]["generated_text"], str)
    assert "symlink loop" in records[1]["error"] and "generated_text" not in records[1]
