"""MIXTRAIN_RAY_ADDRESS (team mode, #21): env > config.toml > unset, shown by `mixtrain config`; what a Ray
job is told (no secret, no password); --num_nodes without a cluster is a one-line error."""

from __future__ import annotations

import json

import pytest

from mixtrain.errors import InvalidInput
from mixtrain.settings import load_settings
from mixtrain.workflows import cluster


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


def test_the_jobs_runtime_env_names_the_stores_without_passwords(home, monkeypatch):
    monkeypatch.setenv("MIXTRAIN_DATABASE_URL", "postgresql://team:hunter2@db.example:5432/mix")
    monkeypatch.setenv("MIXTRAIN_RAY_ADDRESS", "http://head:8265")
    env = cluster.job_env(load_settings(), 2)
    assert env["MIXTRAIN_DATABASE_URL"] == "postgresql://team@db.example:5432/mix"
    assert env["MIXTRAIN_HOME"] == str(home.resolve()) and env["MIXTRAIN_NUM_NODES"] == "2"
    assert "hunter2" not in json.dumps(env) and "MIXTRAIN_RAY_ADDRESS" not in env


@pytest.mark.parametrize("address", ["head:8265", "ray://head:10001", "http://", "8265"])
def test_a_ray_address_that_is_not_http_is_refused(address):
    with pytest.raises(InvalidInput, match="MIXTRAIN_RAY_ADDRESS"):
        cluster.check_address(address)


def test_rays_preamble_is_not_part_of_the_run_log():
    text = (
        "2026-12-06 04:35:54,559\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        "Running entrypoint for job mixtrain-x-1-run1-abc: exec python -m mixtrain.workflows.rayjob 1\n"
        "▶ run #1 of workflow x\nRunning entrypoint for job (the workflow's own line)\n"
    )
    assert (
        cluster.strip_preamble(text) == "▶ run #1 of workflow x\nRunning entrypoint for job (the workflow's own line)\n"
    )


def test_num_nodes_without_a_ray_cluster_is_a_one_line_error(mix, tmp_path):
    (tmp_path / "hi.py").write_text(
        "from mixtrain import MixFlow\n\nclass Hi(MixFlow):\n    def run(self):\n        return 1\n"
    )
    mix("workflow", "create", "hi.py", "--name", "hi", check=0)
    out = mix("workflow", "run", "hi", "--num_nodes", "2", check=1)
    assert out.stderr.startswith("Error: --num_nodes 2 needs a Ray cluster, and MIXTRAIN_RAY_ADDRESS is not set")
    assert len(out.stderr.strip().splitlines()) == 1
    assert mix.json("workflow", "runs", "hi") == []  # nothing half-made
    assert "needs a value" in mix("workflow", "run", "hi", "--num_nodes", check=1).stderr
    mix("workflow", "run", "hi", "--num_nodes", "1", check=0)  # one node is this machine, as ever
    assert mix.json("workflow", "runs", "hi")[0]["placement"] is None
