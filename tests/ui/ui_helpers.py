"""Kept for tests written before the harness: import from `harness` / `harness.ui` instead."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness import BIN, REPO, Mix, home_env
from harness import cli_env as cli_env
from harness.ui import PLANTED, SLEEPY, basic_home, crawl

__all__ = ["BIN", "PLANTED", "REPO", "SLEEPY", "basic_home", "cli_env", "crawl", "home_env", "mix"]


def mix(home: Path, *args, check: int | None = 0, timeout: float = 900, cwd=None) -> subprocess.CompletedProcess:
    return Mix(home.parent, home)(*args, check=check, timeout=timeout, cwd=cwd)
