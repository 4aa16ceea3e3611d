"""Metadata, datasets and secrets on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from mixtrain.client import MixClient
from mixtrain.errors import AlreadyExists, InvalidInput, NotFound
from mixtrain.settings import load_settings


@pytest.fixture(params=["sqlite", "postgres"])
def client(request, home, monkeypatch) -> MixClient:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("MIXTRAIN_DATABASE_URL", url)
        monkeypatch.setenv("MIXTRAIN_CATALOG_URL", url)
    return MixClient(load_settings())


def csv(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_dataset_roundtrip_and_versions(client, tmp_path):
    f = csv(
        tmp_path,
        'image_path,prompt,response\n/a.jpg,"Describe, please","line one\nline two"\n/b.jpg,Q,"A ""quoted"" answer"\n',
    )
    client.create_dataset("my-data", f, description="two rows")
    df = client.get_dataset("my-data").scan().to_pandas()
    assert list(df.columns) == ["image_path", "prompt", "response"]
    assert df.response.tolist() == ["line one\nline two", 'A "quoted" answer']
    assert df.prompt.tolist() == ["Describe, please", "Q"]
    assert client.list_datasets() == ["my-data"]
    first = client.datasets.summary("my-data")
    assert first["rows"] == 2 and first["description"] == "two rows"
    client.datasets.append("my-data", f)
    versions = client.datasets.versions("my-data")
    assert [v["total_rows"] for v in versions] == [2, 4]
    # an old version stays readable at its snapshot
    old = client.get_dataset("my-data").scan(snapshot_id=versions[0]["version"]).to_arrow()
    assert old.num_rows == 2
    client.datasets.delete("my-data")
    with pytest.raises(NotFound):
        client.get_dataset("my-data")


def test_dataset_formats(client, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image_path": ["x.png"], "n": [1]}), tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text(
        '{"image_path": "x.png", "prompt": "p"}\n{"image_path": "y.png", "prompt": "q"}\n'
    )
    client.create_dataset("pq", tmp_path / "d.parquet")
    client.create_dataset("js", tmp_path / "d.jsonl")
    assert client.get_dataset("js").scan().to_arrow().num_rows == 2
    assert client.get_dataset("pq").scan().to_pandas().n.tolist() == [1]


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "is empty"),
        ("a,b\n", "no data rows"),
        ("a,a\n1,2\n", "duplicate column names"),
        ("a,\n1,2\n", "empty column names"),
        ("a,b\n1,\n2,\n", "no values: b"),
    ],
)
def test_bad_files_leave_nothing(client, tmp_path, content, message):
    with pytest.raises(InvalidInput, match=message):
        client.create_dataset("bad", csv(tmp_path, content))
    assert client.list_datasets() == []


def test_existing_name_and_bad_name(client, tmp_path):
    f = csv(tmp_path, "a\n1\n")
    client.create_dataset("d1", f)
    with pytest.raises(AlreadyExists):
        client.create_dataset("d1", f)
    with pytest.raises(InvalidInput):
        client.create_dataset("../etc", f)


def test_register_existing_iceberg_table(client, tmp_path):
    f = csv(tmp_path, "a,b\n1,x\n")
    client.create_dataset("src", f)
    meta = client.get_dataset("src").metadata_location
    client.datasets.register("copy", meta, "registered")
    assert client.get_dataset("copy").scan().to_arrow().num_rows == 1


def test_concurrent_appends_lose_no_rows(client, tmp_path):
    f = csv(tmp_path, "a\n" + "\n".join(str(i) for i in range(10)) + "\n")
    client.create_dataset("shared", f)
    errors = []

    def writer():
        c = MixClient(load_settings())
        try:
            for _ in range(5):
                c.datasets.append("shared", f)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert client.get_dataset("shared").scan().to_arrow().num_rows == 10 * 11


def test_concurrent_creates_exactly_one_wins(home, tmp_path):
    f = csv(tmp_path, "a\n1\n")
    code = "import sys\nfrom mixtrain.client import MixClient\nMixClient().create_dataset('race', sys.argv[1])\n"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(f)], stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1, 1], results
    assert all("already exists" in err for rc, err in results if rc)
    assert MixClient().get_dataset("race").scan().to_arrow().num_rows == 1


def test_secrets_encrypted_at_rest(client, home):
    client.secrets.set("WANDB_API_KEY", "very-secret-value-123")
    assert client.get_secret("WANDB_API_KEY") == "very-secret-value-123"
    assert [s["name"] for s in client.secrets.list()] == ["WANDB_API_KEY"]
    with pytest.raises(AlreadyExists):
        client.secrets.set("WANDB_API_KEY", "another-value")
    assert client.secrets.set("WANDB_API_KEY", "new-value-456", update_existing=True)
    key = load_settings().secret_key_file
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    for path in home.rglob("*"):
        if path.is_file():
            assert b"new-value-456" not in path.read_bytes(), path
    client.secrets.delete("WANDB_API_KEY")
    with pytest.raises(NotFound):
        client.get_secret("WANDB_API_KEY")


def test_migrations_applied_once(client):
    from sqlalchemy import inspect, text

    from mixtrain.metadata.db import HEAD, get_engine

    engine = get_engine(client.settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert {"datasets", "workflows", "workflow_versions", "runs", "models", "model_versions", "secrets"} <= set(
            inspect(conn).get_table_names()
        )
