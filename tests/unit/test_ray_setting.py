"""MIXTRAIN_RAY_ADDRESS (team mode, #21): env > config.toml > unset, shown by `mixtrain config`."""

from __future__ import annotations

import json

from mixtrain.settings import load_settings


def test_ray_address_env_beats_config_file_beats_unset(home, monkeypatch):
    assert load_settings().ray_address == "" and load_settings().sources["ray_address"] == "default"
    home.mkdir(parents=True)
    (home / "config.toml").write_text('ray_address = "http://head.example:8265"\n')
    s = load_settings()
    assert (s.ray_address, s.sources["ray_address"]) == ("http://head.example:8265", "config file")
    monkeypatch.setenv("MIXTRAIN_RAY_ADDRESS", "http://127.0.0.1:8265")
    s = load_settings()
    assert (s.ray_address, s.sources["ray_address"]) == ("http://127.0.0.1:8265", "env")


def test_config_command_shows_the_ray_address(mix):
    out = mix("config").stdout
    assert "ray_address" in out and "(none: workflows run on this machine)" in out and "(default)" in out
    mix.env["MIXTRAIN_RAY_ADDRESS"] = "http://10.0.0.5:8265"
    assert json.loads(mix("config", "--json").stdout)["ray_address"] == "http://10.0.0.5:8265"
    out = mix("config").stdout
    assert "http://10.0.0.5:8265" in out and "(env)" in out
