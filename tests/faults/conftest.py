"""Fault-suite fixtures: a fresh home per test, and a small tmpfs for full disks (root only)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fault_helpers import CLI


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


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only); yields a function mount(size) -> Path. Unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: str = "2m") -> Path:
        d = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
