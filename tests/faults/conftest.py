"""Fault-suite fixtures: a fresh home per test, and a small tmpfs for full disks (root only)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from harness import Mix


@pytest.fixture
def fmix(mix) -> Mix:
    """The CLI on a fresh home of its own (no inherited store setting): the suite-wide `mix`."""
    return mix


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only); yields a function mount(size) -> Path. Unmounted at teardown."""
    mounted: list = []

    def mount(size: str = "2m"):
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
