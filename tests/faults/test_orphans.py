"""§4: no orphan files — a killed write is invisible and `doctor --fix` removes what it left; delete
removes a table's files."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.faults import clean_error, files_under


def _big_csv(path: Path, rows: int = 400_000) -> Path:
    rnd = random.Random(1)
    with open(path, "w") as fh:
        fh.write("image,text\n")
        for i in range(rows):
            fh.write(f"img{i}.png,{rnd.random()} a caption long enough to take a while {i}\n")
    return path


def _kill_when(cli, args, seen) -> bool:
    """Start the CLI, SIGKILL it once ``seen()`` is true; False if it finished first."""
    exe = shutil.which("mixtrain", path=cli.env["PATH"])
    proc = subprocess.Popen(
        [exe, *args], env=cli.env, cwd=cli.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while proc.poll() is None:
        if seen():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    return False


def _parquet_in(folder: Path) -> bool:
    return folder.exists() and any(p.suffix == ".parquet" for p in folder.rglob("*"))


@pytest.mark.parametrize("op", ["create", "append"])
def test_sigkill_mid_write_is_invisible_and_doctor_removes_its_files(fmix, op):
    big = _big_csv(fmix.root / "big.csv")
    small = fmix.root / "small.csv"
    small.write_text("image,text\na.png,one\n")
    ns = fmix.home / "warehouse" / "mixtrain"
    if op == "append":
        fmix("dataset", "create", "pets", str(small), check=0)
        table_dir = next(ns.iterdir())
        baseline = {p for p in table_dir.rglob("*.parquet")}
        args = ["dataset", "append", "pets", str(big)]
        seen = lambda: any(p not in baseline for p in table_dir.rglob("*.parquet"))  # noqa: E731
    else:
        fmix("dataset", "list", check=0)
        args = ["dataset", "create", "pets", str(big)]
        seen = lambda: ns.exists() and any(_parquet_in(d) for d in ns.iterdir())  # noqa: E731
    before = files_under(fmix.home / "warehouse")
    if not _kill_when(fmix, args, seen):
        pytest.fail("the write finished before it could be killed: make the file bigger")

    if op == "create":
        assert "pets" not in fmix("dataset", "list", check=0).stdout
    else:
        assert json.loads(fmix("dataset", "get", "pets", "--json", check=0).stdout)["rows"] == 1
    left = files_under(fmix.home / "warehouse") - before
    assert left, "expected the killed write's files"
    report = fmix("doctor", "--older-than", "0")
    assert report.returncode == 1 and "orphan file(s)" in report.stdout, report.stdout
    fmix("doctor", "--fix", "--older-than", "0", check=0)
    assert files_under(fmix.home / "warehouse") == before
    # the name is free / the table is intact, and a later delete leaves nothing at all
    if op == "create":
        fmix("dataset", "create", "pets", str(small), check=0)
    assert "one" in fmix("dataset", "head", "pets", check=0).stdout
    fmix("dataset", "delete", "pets", "-y", check=0)
    assert files_under(fmix.home / "warehouse") == set()


def test_nested_value_into_scalar_column_is_one_line_and_writes_nothing(fmix):
    """§7: a struct value offered for a string column: one line (was ArrowNotImplementedError), no file."""
    (fmix.root / "n.jsonl").write_text('{"id": 1, "meta": "x"}\n')
    fmix("dataset", "create", "nums", str(fmix.root / "n.jsonl"), check=0)
    before = files_under(fmix.home / "warehouse")
    (fmix.root / "nested.jsonl").write_text('{"id": 2, "meta": {"a": [1, 2]}}\n')
    clean_error(fmix("dataset", "append", "nums", str(fmix.root / "nested.jsonl")), "nums")
    assert files_under(fmix.home / "warehouse") == before
    assert json.loads(fmix("dataset", "get", "nums", "--json", check=0).stdout)["versions"] == 1


def test_delete_removes_every_file_of_the_table_including_strays(fmix):
    (fmix.root / "a.csv").write_text("image,text\na.png,one\n")
    fmix("dataset", "create", "pets", str(fmix.root / "a.csv"), check=0)
    fmix("dataset", "append", "pets", str(fmix.root / "a.csv"), check=0)
    table_dir = next((fmix.home / "warehouse" / "mixtrain").iterdir())
    (table_dir / "data" / "stray.parquet").write_bytes(b"PAR1")  # e.g. left by a killed append
    fmix("dataset", "delete", "pets", "-y", check=0)
    assert files_under(fmix.home / "warehouse") == set()
    assert not table_dir.exists()


@pytest.mark.parametrize("lost", ["metadata", "data"])
def test_damaged_dataset_is_one_line_reported_by_doctor_and_deletable(fmix, lost):
    (fmix.root / "a.csv").write_text("image,text\na.png,one\n")
    fmix("dataset", "create", "pets", str(fmix.root / "a.csv"), check=0)
    table_dir = next((fmix.home / "warehouse" / "mixtrain").iterdir())
    shutil.rmtree(table_dir / lost)
    if lost == "metadata":
        clean_error(fmix("dataset", "head", "pets"), "dataset 'pets' is damaged")
        clean_error(fmix("dataset", "create", "pets", str(fmix.root / "a.csv")), "dataset 'pets' already exists")
    doc = fmix("doctor")
    assert doc.returncode == 1 and "pets" in doc.stdout and "Traceback" not in doc.stdout + doc.stderr, doc.stdout
    proc = fmix("dataset", "delete", "pets", "-y", check=0)
    assert "Traceback" not in proc.stderr and "Failed to delete" not in proc.stderr, proc.stderr
    assert files_under(fmix.home / "warehouse") == set()
    fmix("dataset", "create", "pets", str(fmix.root / "a.csv"), check=0)
