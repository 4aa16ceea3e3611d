"""E2E fixtures: tiny offline VLMs, and a shared home with the fine-tune workflow registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import FAMILIES, REPO, Env


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """All four families, built once in one process (the build is mostly import time)."""
    root = tmp_path_factory.mktemp("tiny")
    code = (
        "import sys\nfrom mixtrain.testing.tiny_vlm import build_tiny_vlm\n"
        "for fam in sys.argv[2:]:\n    build_tiny_vlm(fam, f'{sys.argv[1]}/{fam}')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(root), *FAMILIES], check=True, timeout=600)
    return {f: root / f for f in FAMILIES}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory) -> Env:
    env = Env(tmp_path_factory.mktemp("e2e"))
    env.mix(
        "workflow",
        "create",
        "axolotl_vlm_finetune.py",
        "--name",
        "vlm-finetune",
        "--description",
        "Fine-tune VLMs with Axolotl",
        cwd=REPO / "src/mixtrain/examples",
        check=0,
    )
    return env
