"""E2E fixtures: a home with the fine-tune workflow registered (tiny_models is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from harness import Mix


@pytest.fixture(scope="module")
def e2e(tmp_path_factory) -> Mix:
    env = Mix(tmp_path_factory.mktemp("e2e"))
    env.register_finetune()
    return env
