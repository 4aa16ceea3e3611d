"""`mixtrain doctor` in team mode: PostgreSQL, the S3 bucket and the Ray cluster checked with this machine's
settings and credentials, one line each; a service that is down or refuses the credentials is named on
its own line and the exit code is 1. Real servers only: the session's PostgreSQL, SeaweedFS and 2-node
Ray cluster; the faults are real too (a closed port, wrong keys, a read-only identity, no such bucket).
`mixtrain config` shows the team settings with the database password hidden.
"""

from __future__ import annotations

import json

import pytest

from harness import Mix, cli_env
from harness.s3 import READER, free_ports


@pytest.fixture
def team_env(pg_url, s3_env, ray_cluster) -> dict[str, str]:
    """Every team service configured and reachable."""
    return {
        "MIXTRAIN_DATABASE_URL": pg_url,
        "MIXTRAIN_CATALOG_URL": pg_url,
        **s3_env,
        "MIXTRAIN_RAY_ADDRESS": ray_cluster.dashboard_url,
    }


def _doctor(tmp_path, env: dict[str, str]):
    mix = Mix(tmp_path, tmp_path / "home", cli_env(tmp_path / "home", **env))
    proc = mix("doctor")
    lines = proc.stdout.splitlines()
    return proc, [ln for ln in lines if ln.startswith("✖")], lines


def test_doctor_says_every_team_service_is_reachable(tmp_path, team_env, ray_cluster):
    proc, bad, _ = _doctor(tmp_path, team_env)
    assert proc.returncode == 0 and not bad, proc.stdout + proc.stderr
    text = proc.stdout
    assert "metadata database postgresql+psycopg2://mixtrain@127.0.0.1:" in text and "reachable (PostgreSQL" in text
    assert f"bucket {team_env['MIXTRAIN_WAREHOUSE']} reachable, readable and writable" in text
    assert f"Ray cluster {ray_cluster.dashboard_url} reachable (Ray 2.60.0, 2 node(s) alive)" in text
    assert team_env["AWS_SECRET_ACCESS_KEY"] not in text
    # a home in use on those services: the store checks run too, and pass
    mix = Mix(tmp_path, tmp_path / "home", cli_env(tmp_path / "home", **team_env))
    (tmp_path / "d.csv").write_text("a,b\n1,x\n")
    mix("dataset", "create", "d", "--file", "d.csv", check=0)
    proc = mix("doctor")
    assert proc.returncode == 0 and "✖" not in proc.stdout and "home" in proc.stdout, proc.stdout + proc.stderr


def _closed_port() -> int:
    return free_ports(1)[0]  # free now: nothing listens there


BROKEN = {
    # service name in the line, env change, what the line says
    "postgres-closed-port": (
        "metadata database",
        lambda e: {
            "MIXTRAIN_DATABASE_URL": f"postgresql+psycopg2://mixtrain:pw-SECRET@127.0.0.1:{_closed_port()}/x",
            "MIXTRAIN_CATALOG_URL": e["MIXTRAIN_CATALOG_URL"],
        },
        "is not reachable: connection refused",
    ),
    "postgres-no-database": (
        "dataset catalog",
        lambda e: {"MIXTRAIN_CATALOG_URL": e["MIXTRAIN_CATALOG_URL"].rsplit("/", 1)[0] + "/no_such_db"},
        "the database does not exist",
    ),
    "s3-wrong-secret": (
        "object store",
        lambda e: {"AWS_SECRET_ACCESS_KEY": "wrong-secret-key"},
        "the S3 keys were refused reading",
    ),
    "s3-read-only-identity": (
        "object store",
        lambda e: {"AWS_ACCESS_KEY_ID": READER[0], "AWS_SECRET_ACCESS_KEY": READER[1]},
        "is read-only for these S3 keys",
    ),
    "s3-unknown-key": (
        "object store",
        lambda e: {"AWS_ACCESS_KEY_ID": "nobody-knows-me"},
        "the S3 keys were refused reading",
    ),
    "s3-closed-port": (
        "object store",
        lambda e: {"MIXTRAIN_S3_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"},
        "cannot be reached",
    ),
    "s3-no-bucket": (
        "object store",
        lambda e: {"MIXTRAIN_WAREHOUSE": "s3://no-such-bucket-here/wh"},
        "does not exist",
    ),
    "ray-closed-port": (
        "Ray cluster",
        lambda e: {"MIXTRAIN_RAY_ADDRESS": f"http://127.0.0.1:{_closed_port()}"},
        "is not reachable: connection refused",
    ),
    "ray-not-a-dashboard": (
        "Ray cluster",
        lambda e: {"MIXTRAIN_RAY_ADDRESS": e["MIXTRAIN_S3_ENDPOINT"]},  # something answers, but not Ray
        "is not reachable",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_doctor_names_the_one_service_that_is_not_reachable(tmp_path, team_env, case):
    service, change, says = BROKEN[case]
    env = {**team_env, **change(team_env)}
    proc, bad, _ = _doctor(tmp_path, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(bad) == 1, proc.stdout  # the broken one, and nothing else
    assert bad[0].startswith(f"✖ {service}") and says in bad[0] and " — " in bad[0], bad
    assert "pw-SECRET" not in proc.stdout + proc.stderr and "wrong-secret-key" not in proc.stdout


def test_doctor_on_an_existing_team_home_skips_the_stores_of_a_service_that_is_down(tmp_path, pg_url):
    """A home in use whose PostgreSQL went away: one line for the server, not one per store."""
    home = tmp_path / "home"
    env = {"MIXTRAIN_DATABASE_URL": pg_url, "MIXTRAIN_CATALOG_URL": pg_url}
    mix = Mix(tmp_path, home, cli_env(home, **env))
    (tmp_path / "d.csv").write_text("a,b\n1,x\n")
    mix("dataset", "create", "d", "--file", "d.csv", check=0)
    assert mix("doctor", check=0).returncode == 0
    down = f"postgresql+psycopg2://mixtrain@127.0.0.1:{_closed_port()}/x"
    proc = mix("doctor", env={"MIXTRAIN_DATABASE_URL": down, "MIXTRAIN_CATALOG_URL": down}, check=1)
    bad = [ln for ln in proc.stdout.splitlines() if ln.startswith("✖")]
    assert len(bad) == 1 and "metadata database" in bad[0] and "connection refused" in bad[0], proc.stdout


def test_config_shows_the_team_settings_with_the_password_hidden(tmp_path, s3_env):
    env = {
        **s3_env,
        "MIXTRAIN_DATABASE_URL": "postgresql+psycopg2://alice:pw-SECRET@db.example:5432/mixtrain",
        "MIXTRAIN_RAY_ADDRESS": "http://127.0.0.1:8265",
        "MIXTRAIN_USER": "alice",
    }
    mix = Mix(tmp_path, tmp_path / "home", cli_env(tmp_path / "home", **env))
    shown = json.loads(mix("config", "--json", check=0).stdout)
    assert shown["database_url"] == "postgresql+psycopg2://alice:***@db.example:5432/mixtrain"
    assert shown["warehouse"] == s3_env["MIXTRAIN_WAREHOUSE"] and shown["s3_endpoint"] == s3_env["MIXTRAIN_S3_ENDPOINT"]
    assert shown["s3_region"] == "us-east-1" and shown["ray_address"] == "http://127.0.0.1:8265"
    assert shown["user"] == "alice"
    text = mix("config", check=0).stdout
    assert "pw-SECRET" not in text and s3_env["AWS_SECRET_ACCESS_KEY"] not in text and "alice" in text
