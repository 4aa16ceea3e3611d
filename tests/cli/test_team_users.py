"""Who did what (#21 §3): two users on one home — runs, datasets, model versions and evals record their
creator (``MIXTRAIN_USER``), ``--json`` shows it, ``--user`` filters — on SQLite and on a real PostgreSQL;
and a home created at the previous schema head (0005) upgrades in place, its old rows shown as unknown.

Everything goes through the real CLI (child processes) except the eval row, which is inserted through
the real ``EvalStore`` (an eval run would load a model: not what this test is about).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from harness import Mix, cli_env
from mixtrain.metadata.db import HEAD

WHOAMI_FLOW = '''
import os

from mixtrain import MixFlow, mixparam


class WhoAmI(MixFlow):
    """Reports the user its run sees, and registers a base model from inside the run when asked."""

    base: str = mixparam(default="", description="a base model folder to register")
    model: str = mixparam(default="", description="register it under this name")

    def run(self):
        if self.model:
            from mixtrain.client import MixClient

            MixClient().register_base_model(self.model, self.base, log=lambda s: None)
        return {"user": os.environ.get("MIXTRAIN_USER")}
'''

TABLES = ("runs", "datasets", "model_versions", "evals")


@pytest.fixture(params=["sqlite", "postgres"])
def team(request, tmp_path):
    """``team(user)``: the CLI as that user, all users sharing one home (and, for postgres, one database)."""
    home = tmp_path / "home"
    stores = {}
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        stores = {"MIXTRAIN_DATABASE_URL": url, "MIXTRAIN_CATALOG_URL": url}
    (tmp_path / "whoami.py").write_text(WHOAMI_FLOW)
    (tmp_path / "pets.csv").write_text("image,prompt,response\n/a.jpg,q,a\n/b.jpg,q2,a2\n")
    (tmp_path / "fake-llava").mkdir()
    (tmp_path / "fake-llava" / "config.json").write_text('{"model_type": "llava"}')

    def as_user(user: str | None) -> Mix:
        env = cli_env(home, **stores)
        if user is not None:
            env["MIXTRAIN_USER"] = user
        return Mix(tmp_path, home, env)

    as_user.url = stores.get("MIXTRAIN_DATABASE_URL") or f"sqlite:///{home / 'mixtrain.db'}"  # type: ignore[attr-defined]
    as_user.root = tmp_path  # type: ignore[attr-defined]
    return as_user


def _json(mix: Mix, *args):
    return json.loads(mix(*args, "--json", check=0).stdout)


def test_two_users_on_one_home_each_see_who_did_what(team):
    alice, bob = team("alice"), team("bob")
    fake = str(team.root / "fake-llava")
    alice("workflow", "create", "whoami.py", "--name", "whoami", check=0)
    alice("dataset", "create", "alices", "--file", "pets.csv", check=0)
    bob("dataset", "create", "bobs", "--file", "pets.csv", check=0)
    alice("workflow", "run", "whoami", check=0)
    # bob's run registers a model from inside the run: the version is the run's user's doing
    bob("workflow", "run", "whoami", "--base", fake, "--model", "shared", check=0)
    alice("model", "register", "shared", "--base_model", fake, "--model_type", "llava", check=0)  # version 2
    alice("model", "register", "mine", "--base_model", fake, "--model_type", "llava", check=0)
    _eval_row(team, "alice", "ev-a")
    _eval_row(team, "bob", "ev-b")

    runs = _json(alice, "workflow", "runs", "whoami")
    assert [(r["number"], r["created_by"]) for r in runs] == [(2, "bob"), (1, "alice")]
    assert [r["output"]["user"] for r in runs] == ["bob", "alice"]  # the run's processes see their user
    assert [r["number"] for r in _json(alice, "workflow", "runs", "whoami", "--user", "bob")] == [2]
    assert _json(alice, "workflow", "runs", "whoami", "--user", "carol") == []
    table = alice("workflow", "runs", "whoami", check=0).stdout
    assert "user" in table and "alice" in table and "bob" in table
    assert "No runs of whoami yet by carol." in alice("workflow", "runs", "whoami", "--user", "carol", check=0).stdout

    assert {d["name"]: d["created_by"] for d in _json(bob, "dataset", "list")} == {"alices": "alice", "bobs": "bob"}
    assert [d["name"] for d in _json(bob, "dataset", "list", "--user", "alice")] == ["alices"]
    assert _json(bob, "dataset", "get", "bobs")["created_by"] == "bob"
    assert "No datasets created by carol." in bob("dataset", "list", "--user", "carol", check=0).stdout

    models = {m["name"]: (m["version"], m["created_by"]) for m in _json(bob, "model", "list")}
    assert models == {"shared": (2, "alice"), "mine": (1, "alice")}
    mine = {m["name"]: (m["version"], m["created_by"]) for m in _json(bob, "model", "list", "--user", "bob")}
    assert mine == {"shared": (1, "bob")}  # the latest version bob registered, not alice's newer one
    assert [v["created_by"] for v in _json(bob, "model", "versions", "shared")] == ["bob", "alice"]
    assert "alice" in bob("model", "list", check=0).stdout

    assert [e["name"] for e in _json(bob, "eval", "list", "--user", "bob")] == ["ev-b"]
    assert {e["name"]: e["created_by"] for e in _json(bob, "eval", "list")} == {"ev-a": "alice", "ev-b": "bob"}


def test_the_default_user_is_the_os_user_down_to_the_runs_processes(team):
    me = team(None)  # no MIXTRAIN_USER anywhere: the OS user
    me("workflow", "create", "whoami.py", "--name", "whoami", check=0)
    me("workflow", "run", "whoami", check=0)
    (run,) = _json(me, "workflow", "runs", "whoami")
    assert run["created_by"] == getpass.getuser() and run["output"]["user"] == getpass.getuser()
    assert json.loads(me("config", "--json", check=0).stdout)["user"] == getpass.getuser()


def test_a_home_at_the_previous_head_upgrades_and_shows_old_rows_as_unknown(team):
    old = team("olduser")
    fake = str(team.root / "fake-llava")
    old("workflow", "create", "whoami.py", "--name", "whoami", check=0)
    old("dataset", "create", "pets", "--file", "pets.csv", check=0)
    old("workflow", "run", "whoami", check=0)
    old("model", "register", "m", "--base_model", fake, "--model_type", "llava", check=0)
    _eval_row(team, "olduser", "ev")
    _set_back_to_0005(team.url)  # now exactly a home written before 0006: no user anywhere

    dave = team("dave")
    (run,) = _json(dave, "workflow", "runs", "whoami")  # the first command migrates
    assert run["created_by"] is None and run["status"] == "completed"
    with create_engine(team.url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD  # 0006 and later
    assert " ? " in dave("workflow", "runs", "whoami", check=0).stdout  # unknown, not a guess
    assert _json(dave, "dataset", "list")[0]["created_by"] is None
    assert _json(dave, "model", "list")[0]["created_by"] is None
    assert _json(dave, "eval", "list")[0]["created_by"] is None

    dave("workflow", "run", "whoami", check=0)
    assert [r["created_by"] for r in _json(dave, "workflow", "runs", "whoami")] == ["dave", None]
    assert [r["number"] for r in _json(dave, "workflow", "runs", "whoami", "--user", "dave")] == [2]
    assert dave("doctor", check=0).returncode == 0


def _set_back_to_0005(url: str) -> None:
    """Downgrade the metadata DB to revision 0005 with Alembic (drops the user columns, keeps the rows)."""
    from alembic import command
    from alembic.config import Config

    import mixtrain.metadata.db as db

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
        for table in TABLES:
            assert "created_by" not in {c["name"] for c in inspect(conn).get_columns(table)}
    engine.dispose()


def _eval_row(team, user: str, name: str) -> None:
    """An eval as ``user`` creates it, through the real store, in a child process with that user's settings."""
    code = (
        "from mixtrain.evals.store import EvalStore; from mixtrain.settings import load_settings; import sys\n"
        "EvalStore(load_settings()).insert(name=sys.argv[1], dataset='pets', snapshot_id=None, metric='exact',"
        " config={}, models=[{'name': 'm', 'version': 1, 'label': 'm_v1'}], results_dataset=sys.argv[1] + '-results')\n"
    )
    import subprocess
    import sys

    env = team(user).env
    subprocess.run([sys.executable, "-c", code, name], env=env, check=True, capture_output=True, timeout=120)
