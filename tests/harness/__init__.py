"""The one test harness: an isolated home, the real CLI, a poll helper, tiny models, shared trainings.

Imported normally (`from harness import Mix, wait_for`): pytest puts tests/ on the path
(`pythonpath` in pyproject.toml). The fixtures that use these pieces live in tests/conftest.py.

Slow session/module fixtures (tiny-model builds, shared trainings, dry runs) register their work as
``prefetch.job``s: it starts in a background thread once collection is done, while the CLI tests run on the
other core (harness/prefetch.py); independent child processes of one fixture run two at a time
(``parallel.run_all``). A new training that other tests could share belongs in such a job.

`make test` runs two such sessions side by side (scripts/run_tests.py): tests/e2e in one, the rest in the
other; they share only the tiny models (``models.shared_tiny_models``).
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
