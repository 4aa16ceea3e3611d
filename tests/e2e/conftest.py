"""E2E fixtures: a home with the fine-tune workflow registered, and the families' trainings shared by the
tests that only need a trained adapter (tiny_models is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from harness import Mix, prefetch
from harness.trainings import FamilyTrainings


@pytest.fixture(scope="module")
def e2e(tmp_path_factory) -> Mix:
    env = Mix(tmp_path_factory.mktemp("e2e"))
    env.register_finetune()
    return env


@prefetch.job("families", needs=("tiny_models",))
def _families(tmp) -> FamilyTrainings:
    env = prefetch.mix(tmp.mktemp("families"))
    env.register_finetune()
    trainings = FamilyTrainings(env, prefetch.result("tiny_models", tmp))
    trainings.train_all()
    return trainings


@pytest.fixture(scope="session")
def families(tmp_path_factory, tiny_models) -> FamilyTrainings:
    """Every family fine-tuned once (3 steps) in one home; started early in the background (harness/prefetch.py)."""
    return prefetch.result("families", tmp_path_factory)
