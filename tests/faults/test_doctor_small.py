"""#20 §6: doctor flags a world-readable secret key (and --fix makes it 0600), its advice for a broken key
does not send the user back to doctor, and a leftover image download (*.part) is a temp file it reports.
`model register` says when it corrected --model_type. Real CLI on a fresh home."""

from __future__ import annotations

import json
import os

from fault_helpers import clean_error


def _secret(cli) -> None:
    cli("secret", "set", "API_TOKEN", input="tok-123456", check=0)


def test_world_readable_secret_key_is_flagged_and_fixed(fmix):
    _secret(fmix)
    key = fmix.home / "secret.key"
    assert "readable by other users" not in fmix("doctor", check=0).stdout  # created 0600
    key.chmod(0o644)
    out = fmix("doctor")
    text = " ".join(out.stdout.split())  # rich wraps long lines
    assert out.returncode == 1 and f"the secret key file {key} is readable by other users (mode 0644)" in text, text
    assert f"chmod 600 {key}" in text
    fmix("doctor", "--fix", check=0)
    assert key.stat().st_mode & 0o777 == 0o600
    assert fmix("secret", "get", "API_TOKEN", "--show", check=0).stdout.strip().endswith("tok-123456")


def test_advice_for_a_broken_key_does_not_point_back_at_doctor(fmix):
    _secret(fmix)
    (fmix.home / "secret.key").write_text("garbage")
    clean_error(fmix("secret", "get", "API_TOKEN", "--show"), "does not hold a valid key")
    out = fmix("doctor")
    text = " ".join(out.stdout.split())  # rich wraps long lines
    assert out.returncode == 1 and "secret.key does not hold a valid key" in text, text
    advice = text[text.index("does not hold a valid key") :].split("✔")[0]
    assert "mixtrain doctor" not in advice, advice
    assert "restore it from a backup" in advice and "secret delete" in advice, advice


def test_a_leftover_image_download_is_a_temp_file(fmix):
    _secret(fmix)
    cache = fmix.home / "cache" / "images"
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / ".tmpab12cd.part"  # what an interrupted download leaves (images.resolve's mkstemp)
    part.write_bytes(b"\x89PNG half")
    os.utime(part, (1, 1))
    out = fmix("doctor")
    text = "".join(out.stdout.split())  # rich wraps long lines (paths have no spaces)
    assert out.returncode == 1 and "no temp files" not in out.stdout and str(part) in text, out.stdout
    fmix("doctor", "--fix", check=0)
    assert not part.exists()
    assert "no temp files" in fmix("doctor", check=0).stdout


def test_model_register_says_it_corrected_the_model_type(fmix):
    folder = fmix.root / "fake-llava"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llava"}')  # config only: register reads no weights
    out = fmix("model", "register", "base", "--base_model", str(folder), "--model_type", "phi3_v", check=0)
    assert "using the llava handling instead of model_type=phi3_v" in " ".join(out.stdout.split()), out.stdout
    assert json.loads(fmix("model", "get", "base", "--json", check=0).stdout)["model_type"] == "llava"
