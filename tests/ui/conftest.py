"""Dashboard tests over a real home (real SQLite, Iceberg, runs) driven in-process through the ASGI app."""

from __future__ import annotations

import pytest

from harness import home_env
from harness.ui import basic_home


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    home = basic_home(root)
    with home_env(home):
        yield home


@pytest.fixture
def app_client(ui_home):
    from fastapi.testclient import TestClient

    from mixtrain.ui.app import create_app

    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        c.get("/datasets")  # the first page sets the CSRF cookie, as in a browser
        yield c
