"""The one test harness: an isolated home, the real CLI, a poll helper, tiny models, shared trainings.

Imported normally (`from harness import Mix, wait_for`): pytest puts tests/ on the path
(`pythonpath` in pyproject.toml). The fixtures that use these pieces live in tests/conftest.py.
"""

from __future__ import annotations

from harness import prefetch
from harness.cli import BIN, EXAMPLES, OFFLINE_ENV, REPO, Mix, cli_env, home_env
from harness.data import colour_dataset, write
from harness.models import FAMILIES, TRAIN_ARGS, build_tiny_models, finetune_args
from harness.poll import gone, registry, wait_for

__all__ = [
    "BIN",
    "EXAMPLES",
    "FAMILIES",
    "OFFLINE_ENV",
    "REPO",
    "TRAIN_ARGS",
    "Mix",
    "build_tiny_models",
    "cli_env",
    "colour_dataset",
    "finetune_args",
    "gone",
    "home_env",
    "prefetch",
    "registry",
    "wait_for",
    "write",
]
