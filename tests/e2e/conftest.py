"""E2E fixtures: a home with the fine-tune workflow registered, and the families' trainings shared by the
tests that only need a trained adapter (tiny_models is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from harness import Mix
from harness.trainings import FamilyTrainings


@pytest.fixture(scope="module")
def e2e(tmp_path_factory) -> Mix:
    env = Mix(tmp_path_factory.mktemp("e2e"))
    env.register_finetune()
    return env


@pytest.fixture(scope="session")
def families(tmp_path_factory, tiny_models) -> FamilyTrainings:
    env = Mix(tmp_path_factory.mktemp("families"))
    env.register_finetune()
    return FamilyTrainings(env, tiny_models)
