"""A team shares one mixtrain (#21 §3): a second MIXTRAIN_HOME — a second machine, sharing nothing with the
first but the PostgreSQL metadata database and catalog (and, with an S3 warehouse, the bucket) — sees the
first one's datasets, runs and models through the dashboard's HTTP routes, with who made each.

No browser: the real app in-process (FastAPI's TestClient), over real stores written by the real CLI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from harness import Mix, cli_env


def colour_pictures(root) -> str:
    """A small image-text CSV (the colour task's images), whose images `dataset create` stores."""
    from mixtrain.testing.colour_task import make_task

    return make_task(root, n_train=3, n_test=1, size=32)["train_csv"]


WHOAMI_FLOW = '''
from mixtrain import MixFlow, mixparam


class Hello(MixFlow):
    """Says hello."""

    who: str = mixparam(default="team", description="who to greet")

    def run(self):
        print(f"hello {self.who}", flush=True)
        return {"greeted": self.who}
'''


@pytest.fixture(params=["postgres+s3", "postgres+shared-folder"])
def shared(request, tmp_path, pg_url) -> dict[str, str]:
    """What the two homes share: the metadata DB and the catalog on PostgreSQL, and the warehouse — an S3
    bucket (the session's SeaweedFS), or a shared folder as an NFS mount would be."""
    db = {"MIXTRAIN_DATABASE_URL": pg_url, "MIXTRAIN_CATALOG_URL": pg_url}
    if request.param == "postgres+s3":
        return {**db, **request.getfixturevalue("s3_env")}
    return {**db, "MIXTRAIN_WAREHOUSE": (tmp_path / "shared-warehouse").as_uri()}


def _first_machine(tmp_path, shared) -> Mix:
    home_a = tmp_path / "machine-a" / "home"
    alice = Mix(tmp_path, home_a, {**cli_env(home_a, **shared), "MIXTRAIN_USER": "alice"})
    (tmp_path / "hello.py").write_text(WHOAMI_FLOW)
    (tmp_path / "notes.csv").write_text("prompt,response\nwhat colour?,red\nwhat shape?,a square\n")
    (tmp_path / "fake-llava").mkdir()
    (tmp_path / "fake-llava" / "config.json").write_text('{"model_type": "llava"}')
    alice("dataset", "create", "team-notes", "--file", "notes.csv", "--description", "shared notes", check=0)
    pictures = colour_pictures(tmp_path / "pictures")
    alice("dataset", "create", "team-pictures", "--file", pictures, check=0)  # images stored in the warehouse
    alice("workflow", "create", "hello.py", "--name", "hello", check=0)
    alice("workflow", "run", "hello", "--who", "bob", check=0)
    alice("model", "register", "team-base", "--base_model", str(tmp_path / "fake-llava"), check=0)
    adapter = tmp_path / "adapter"  # what a fine-tune registers: an adapter folder (never loaded here)
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    code = (
        "import sys; from mixtrain.models.registry import ModelRegistry; from mixtrain.settings import load_settings\n"
        "ModelRegistry(load_settings()).register('team-tuned', base_model=sys.argv[1], model_type='llava',"
        " adapter_path=sys.argv[2], train_loss=0.5, lineage={})\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "fake-llava"), str(adapter)], env=alice.env, check=True, timeout=120
    )
    return alice


def test_a_second_home_sees_the_first_ones_work_in_the_dashboard(tmp_path, shared, monkeypatch):
    _first_machine(tmp_path, shared)
    shutil.rmtree(tmp_path / "machine-a")  # the second machine can use nothing of the first one's home
    home_b = tmp_path / "machine-b" / "home"
    monkeypatch.setenv("MIXTRAIN_HOME", str(home_b))
    monkeypatch.setenv("MIXTRAIN_USER", "bob")
    for k, v in shared.items():
        monkeypatch.setenv(k, v)
    from fastapi.testclient import TestClient

    from mixtrain.ui.app import create_app

    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        page = c.get("/datasets")
        assert page.status_code == 200, page.text[-2000:]
        assert "team-notes" in page.text and ">alice<" in page.text
        page = c.get("/datasets/team-notes")
        assert page.status_code == 200 and "a square" in page.text and "shared notes" in page.text
        assert 'id="dataset-user">alice<' in page.text
        page = c.get("/datasets/team-pictures")
        thumbs = re.findall(r'src="(/thumb/dataset/[^"]+)"', page.text)
        assert page.status_code == 200 and len(thumbs) == 3, page.text[-2000:]
        for url in thumbs:  # the stored images, read back from the shared warehouse
            thumb = c.get(url.replace("&amp;", "&"))
            assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/"), url

        page = c.get("/workflows/hello")
        assert page.status_code == 200 and "#1" in page.text and "completed" in page.text and ">alice<" in page.text
        page = c.get("/runs/hello/1")
        assert page.status_code == 200 and "completed" in page.text and 'id="run-user">alice<' in page.text

        page = c.get("/models")
        assert page.status_code == 200 and "team-base" in page.text and ">alice<" in page.text
        page = c.get("/models/team-base")
        assert page.status_code == 200 and 'id="model-user">alice<' in page.text
        page = c.get("/models/team-tuned")
        assert page.status_code == 200 and 'id="model-user">alice<' in page.text
        if shared["MIXTRAIN_WAREHOUSE"].startswith("s3://"):  # the adapter went to the bucket, not home A
            assert f"{shared['MIXTRAIN_WAREHOUSE']}/models/team-tuned/" in page.text
