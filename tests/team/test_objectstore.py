"""objectstore against a real S3 server (SeaweedFS on loopback): folders up and down, content checks,
one-line errors for wrong keys, a read-only identity and a stopped server; settings shown, keys never."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.s3 import ADMIN, READER, WeedServer
from mixtrain import objectstore
from mixtrain.errors import StorageError
from mixtrain.settings import load_settings


@pytest.fixture
def s3(home, monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    objectstore._filesystem.cache_clear()
    return load_settings()


def _adapter(folder):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 50)
    (folder / "sub").mkdir()
    (folder / "sub" / "chat_template.jinja").write_text("{{ messages }}")
    return folder


def test_settings_and_dir_round_trip(s3, tmp_path):
    assert s3.remote_warehouse and s3.s3_region == "us-east-1" and s3.s3_endpoint.startswith("http://127.0.0.1:")
    src = _adapter(tmp_path / "adapter")
    uri = objectstore.join(s3.warehouse, "models", "m", "v1")
    objectstore.put_dir(src, uri)
    names = sorted(e.uri.rsplit("/v1/", 1)[1] for e in objectstore.listing(uri))
    assert names == [
        objectstore.MANIFEST,
        "adapter_config.json",
        "adapter_model.safetensors",
        "sub/chat_template.jinja",
    ]
    local = objectstore.get_dir(uri)
    assert local.is_relative_to(s3.artifact_cache)
    for rel in ("adapter_config.json", "adapter_model.safetensors", "sub/chat_template.jinja"):
        assert (local / rel).read_bytes() == (src / rel).read_bytes()
    # downloaded once: a second call is served from the cache even with the remote copy gone
    objectstore.delete_prefix(uri)
    assert objectstore.listing(uri) == []
    assert objectstore.get_dir(uri) == local
    assert objectstore.local_path(str(src)) == str(src)  # a local path is taken as is


def test_get_dir_checks_content_and_completeness(s3, tmp_path):
    src = _adapter(tmp_path / "adapter")
    uri = objectstore.join(s3.warehouse, "models", "bad", "v1")
    objectstore.put_dir(src, uri)
    objectstore.put_bytes(b"tampered", objectstore.join(uri, "adapter_config.json"))
    with pytest.raises(StorageError, match="does not match its recorded sha256"):
        objectstore.get_dir(uri)
    assert not objectstore.cache_dir_for(uri).exists()  # nothing half-downloaded left in the cache
    assert not [p for p in s3.artifact_cache.iterdir() if p.name.startswith(".part-")]
    unfinished = objectstore.join(s3.warehouse, "models", "half", "v1")
    objectstore.put_file(src / "adapter_config.json", objectstore.join(unfinished, "adapter_config.json"))
    with pytest.raises(StorageError, match="upload never finished"):
        objectstore.get_dir(unfinished)


@pytest.mark.parametrize(
    ("keys", "message"),
    [(("nobody", "wrong-secret-000000"), "refused the S3 keys"), (READER, "access denied .*read-only identity")],
)
def test_wrong_keys_and_read_only_identity_are_one_line(s3, monkeypatch, keys, message):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[1])
    with pytest.raises(StorageError, match=message) as err:
        objectstore.put_bytes(b"x", objectstore.join(s3.warehouse, "probe"))
    assert "\n" not in str(err.value) and keys[1] not in str(err.value)


def test_missing_keys_and_unreachable_server(s3, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        objectstore.filesystem()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN[1])
    down = WeedServer(tmp_path / "never-started")  # free ports nobody listens on
    monkeypatch.setenv("MIXTRAIN_S3_ENDPOINT", down.endpoint)
    with pytest.raises(StorageError, match=r"cannot be reached.*start the S3 server"):
        objectstore.put_bytes(b"x", objectstore.join(load_settings().warehouse, "probe"))


def test_config_shows_team_settings_never_keys(mix, s3_env):
    mix.env.update(s3_env)
    out = mix("config", check=0).stdout
    assert s3_env["MIXTRAIN_WAREHOUSE"] in out and s3_env["MIXTRAIN_S3_ENDPOINT"] in out
    assert "us-east-1" in out and "s3_keys" in out and "set" in out
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in out and s3_env["AWS_ACCESS_KEY_ID"] not in out
    shown = json.loads(mix("config", "--json", check=0).stdout)
    assert shown["s3_region"] == "us-east-1" and shown["s3_keys"] == "set"
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in json.dumps(shown)


def test_bad_warehouse_uri_is_one_line(mix):
    mix.env["MIXTRAIN_WAREHOUSE"] = "gs://bucket/wh"
    r = mix("dataset", "list", check=1)
    assert "unsupported scheme 'gs'" in r.stderr and r.stderr.count("\n") == 1


def test_registry_uploads_the_adapter_and_consumers_get_a_local_copy(s3, tmp_path):
    """No model is loaded: the registry's side of artifacts (upload first, URI recorded, one download)."""
    from mixtrain.models.registry import ModelRegistry, local_adapter

    src = _adapter(tmp_path / "out")
    (src / "checkpoint-3").mkdir()
    (src / "checkpoint-3" / "optimizer.pt").write_bytes(b"resumable state, not the artifact")
    reg = ModelRegistry(s3)
    v = reg.register(
        "colour", base_model="/base", model_type="llava", adapter_path=str(src), train_loss=None, lineage={}
    )
    assert v.adapter_path.startswith(s3.warehouse + "/models/colour/")
    assert reg.get("colour").adapter_path == v.adapter_path  # the URI is what is recorded
    names = {e.uri.rsplit("/", 1)[1] for e in objectstore.listing(v.adapter_path)}
    assert "adapter_model.safetensors" in names and "optimizer.pt" not in names
    assert all(f.ok for f in reg.check())
    local = Path(local_adapter(v.adapter_path, s3))
    assert (local / "adapter_model.safetensors").read_bytes() == (src / "adapter_model.safetensors").read_bytes()
    # the consumers' seams (no model loaded): model run / eval / export, and the server's plan
    from mixtrain.models.inference import LoadedModel
    from mixtrain.serving.pool import plan

    info = {"name": "colour", "version": 1, "base_model": str(tmp_path), "adapter_path": v.adapter_path}
    loaded = LoadedModel.__new__(LoadedModel)
    loaded.info, loaded.settings = info, s3
    assert loaded._sources(None)[0] == local
    (served,) = plan([{**info, "model_type": "llava"}])[0].served
    assert served.adapter_path == str(local) and served.rank == 8
    objectstore.delete([objectstore.join(v.adapter_path, objectstore.MANIFEST)])
    assert not reg.check()[0].ok  # a lost upload is reported by doctor
    reg.delete("colour")
    assert objectstore.listing(v.adapter_path) == []


def test_a_failed_upload_registers_nothing(s3, tmp_path, monkeypatch):
    from mixtrain.models.registry import ModelRegistry

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READER[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READER[1])
    reg = ModelRegistry(s3)
    with pytest.raises(StorageError, match="access denied"):
        reg.register(
            "m",
            base_model="/b",
            model_type="llava",
            adapter_path=str(_adapter(tmp_path / "a")),
            train_loss=None,
            lineage={},
        )
    assert reg.list() == []


def test_an_old_stored_image_is_made_young_again_by_an_ingest_that_uses_it(s3, monkeypatch):
    """doctor spares unreferenced images only by age (no lock spans machines): an ingest that finds its
    image already stored but old re-writes it, so a sweep cannot take it before that ingest commits."""
    import time

    from mixtrain.images import store

    data = b"\\x89PNG pretend image bytes"
    sha = store.put_bytes(s3.warehouse, data, "png")
    uri = store.stored_ref(s3.warehouse, sha, "png")
    first = objectstore.entry(uri)
    assert first is not None and objectstore.read_bytes(uri) == data
    time.sleep(1.1)  # S3 modification times have one-second resolution
    store.put_bytes(s3.warehouse, data, "png")
    assert objectstore.entry(uri).mtime == first.mtime  # young enough: stored once, not rewritten
    monkeypatch.setattr(store, "REFRESH_AFTER", 0)
    store.put_bytes(s3.warehouse, data, "png")
    assert objectstore.entry(uri).mtime > first.mtime
