"""Secret commands as the spec writes them; values never shown unless asked, never stored in clear."""

from __future__ import annotations

import json
import subprocess


def test_secret_lifecycle(mix, home):
    value = "wandb-key-5f3c9a1e77"
    proc = mix("secret", "create", "WANDB_API_KEY", value, check=0)  # the spec's form
    assert "WANDB_API_KEY" in proc.stdout and value not in proc.stdout

    listed = mix("secret", "list", check=0).stdout
    assert "WANDB_API_KEY" in listed and value not in listed
    listed_json = json.loads(mix("secret", "list", "--json", check=0).stdout)
    assert [r["name"] for r in listed_json] == ["WANDB_API_KEY"]
    assert value not in json.dumps(listed_json)

    hidden = mix("secret", "get", "WANDB_API_KEY", check=0).stdout
    assert value not in hidden and "--show" in hidden
    assert mix("secret", "get", "WANDB_API_KEY", "--show", check=0).stdout == value + "\n"

    # `set NAME` with the value on stdin; --update replaces an existing one.
    proc = mix("secret", "set", "WANDB_API_KEY", "--update", input="new-value-from-stdin\n", check=0)
    assert "Updated" in proc.stdout
    assert mix("secret", "get", "WANDB_API_KEY", "--show", check=0).stdout == "new-value-from-stdin\n"

    proc = mix("secret", "set", "HF_TOKEN", input="hf_abcdef123456", check=0)
    assert "Created" in proc.stdout

    # Encrypted at rest: no value appears in any file under the home (grep runs in a child process so
    # this process never opens, and on close unlocks, the SQLite files).
    for needle in ("new-value-from-stdin", "hf_abcdef123456", value):
        proc = subprocess.run(["grep", "-rlF", "--", needle, str(home)], capture_output=True, text=True)
        assert proc.returncode == 1, f"{needle!r} in clear in {proc.stdout}"
    key_file = home / "secret.key"
    assert key_file.stat().st_mode & 0o077 == 0, "the key file must be private (0600)"

    mix("secret", "delete", "HF_TOKEN", "-y", check=0)
    assert "HF_TOKEN" not in mix("secret", "list", check=0).stdout
    mix("secret", "get", "HF_TOKEN", check=1)


def test_secret_value_is_not_an_argument_when_piped(mix, tmp_path):
    """A value piped on stdin keeps it out of the shell history and `ps`."""
    secret_file = tmp_path / "token.txt"
    secret_file.write_text("piped-token-value-xyz\n")
    proc = mix("secret", "create", "PIPED", input=secret_file.read_text(), check=0)
    assert "piped-token-value-xyz" not in proc.stdout + proc.stderr
    assert mix("secret", "get", "PIPED", "--show", check=0).stdout.strip() == "piped-token-value-xyz"


def test_python_api(home):
    import mixtrain

    c = mixtrain.MixClient()
    c.create_secret("API_KEY", "s3cr3t-value")
    assert c.get_secret("API_KEY") == "s3cr3t-value"
