"""`mixtrain ui`: refuses to expose itself without a token; stays out of the CLI's import path."""

from __future__ import annotations

import subprocess
import sys


def test_non_loopback_host_needs_a_token(mix):
    r = mix("ui", "--host", "0.0.0.0", "--port", "1")
    assert r.returncode == 1
    assert (
        r.stderr.startswith("Error: --host 0.0.0.0 is reachable from other machines") and "--token-secret" in r.stderr
    )


def test_token_secret_must_exist_and_be_long(mix):
    r = mix("ui", "--host", "0.0.0.0", "--token-secret", "UI_TOKEN")
    assert r.returncode == 1 and "secret 'UI_TOKEN' not found" in r.stderr
    mix("secret", "create", "UI_TOKEN", "short12", check=0)
    r = mix("ui", "--host", "0.0.0.0", "--token-secret", "UI_TOKEN")
    assert r.returncode == 1 and "under 16 characters" in r.stderr and "short12" not in r.stderr + r.stdout


def test_bad_port_is_a_usage_error(mix):
    assert mix("ui", "--port", "0").returncode == 2


def test_cli_does_not_import_the_web_stack():
    code = "import sys, mixtrain.cli.main; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'torch', 'matplotlib') if m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
