"""Fault-suite helpers and fixtures (imported by the test modules: a conftest.py here would shadow the
root one, whose CLI class these reuse).

Fault injection: the real CLI and real processes under kills, full disks, corrupt state, races and
odd files. Every case asserts the three things a user cares about: one clean error line (no traceback), nothing
half-written left behind, and no work lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))  # workflow_helpers

from conftest import CLI  # noqa: E402


@pytest.fixture
def fmix(tmp_path) -> CLI:
    """The CLI on a fresh home of its own (no inherited MIXTRAIN_* setting)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXTRAIN_")}
    env.update(MIXTRAIN_HOME=str(tmp_path / "home"), COLUMNS="200", NO_COLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    cli = CLI(env, tmp_path)
    cli.home = tmp_path / "home"
    cli.root = tmp_path
    return cli


def clean_error(proc, *needles: str) -> str:
    """Exit 1, one `Error:` line, no traceback; the line contains every needle. Returns the line."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file()} if Path(path).exists() else set()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only); yields a function mount(size) -> Path. Unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: str = "2m") -> Path:
        d = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system holding ``directory`` until at most ``leave`` bytes are free."""
    import shutil

    filler = directory / ".filler"
    with open(filler, "ab") as fh:
        while True:
            free = shutil.disk_usage(directory).free
            if free <= leave:
                break
            try:
                fh.write(b"\0" * min(1 << 20, max(4096, free - leave)))
                fh.flush()
            except OSError:
                break
