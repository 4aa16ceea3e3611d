"""MIXTRAIN_USER: who a home's records are attributed to (env > config.toml > the OS user)."""

from __future__ import annotations

import getpass
import json

import pytest

from mixtrain.errors import InvalidInput
from mixtrain.settings import load_settings, os_user


def test_user_defaults_to_the_os_user(home, monkeypatch):
    monkeypatch.delenv("MIXTRAIN_USER", raising=False)
    s = load_settings()
    assert s.user == getpass.getuser() == os_user() and s.sources["user"] == "default"


def test_user_from_env_beats_config_file(home, monkeypatch):
    monkeypatch.delenv("MIXTRAIN_USER", raising=False)
    home.mkdir(parents=True)
    (home / "config.toml").write_text('user = "bob"\n')
    assert (load_settings().user, load_settings().sources["user"]) == ("bob", "config file")
    monkeypatch.setenv("MIXTRAIN_USER", "alice@example.org")
    assert (load_settings().user, load_settings().sources["user"]) == ("alice@example.org", "env")


@pytest.mark.parametrize("bad", ["a b", "x" * 65, "-lead", "a/b", "ali\nce", "é"])
def test_bad_user_is_one_line_error(home, monkeypatch, bad):
    monkeypatch.setenv("MIXTRAIN_USER", bad)
    with pytest.raises(InvalidInput, match=r"MIXTRAIN_USER .* is not a user name"):
        load_settings()


def test_config_shows_the_user(mix):
    assert json.loads(mix("config", "--json", env={"MIXTRAIN_USER": "carol"}, check=0).stdout)["user"] == "carol"
    text = mix("config", check=0).stdout
    assert f"user          {getpass.getuser()}  (default)" in text
