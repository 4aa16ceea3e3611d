"""Datasets in an S3 warehouse with the PostgreSQL catalog (team mode), on a real SeaweedFS and a real
PostgreSQL: two homes sharing only those two see the same datasets and images; wrong keys and a read-only
identity fail the first write in one line; concurrent appends all land; a server stopped mid-append leaves
nothing half-committed, and `mixtrain doctor` sweeps what the failed append left (list + diff, age guard)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from harness import BIN, Mix, cli_env, home_env
from harness.s3 import READER, WeedServer
from mixtrain import objectstore
from mixtrain.settings import load_settings

pytestmark = pytest.mark.postgres


def _images_csv(folder: Path, n: int, start: int = 0) -> Path:
    """``n`` distinct tiny PNGs (distinct colours) and a CSV naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + n):
        name = f"img{i}.png"
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 7)).save(folder / name)
        rows.append({"image": name, "prompt": "colour?", "response": f"c{i}"})
    path = folder / f"rows{start}.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "prompt", "response"])
        w.writeheader()
        w.writerows(rows)
    return path


def _team(root: Path, name: str, pg_url: str, env: dict[str, str]) -> Mix:
    home = root / name
    return Mix(root, home, cli_env(home, MIXTRAIN_DATABASE_URL=pg_url, MIXTRAIN_CATALOG_URL=pg_url, **env))


def _rows(mix: Mix, name: str) -> int:
    return next(d["rows"] for d in mix.json("dataset", "list") if d["name"] == name)


def _objects(env: dict[str, str], under: str) -> list[str]:
    with _s3(env):
        return [e.uri for e in objectstore.listing(f"{env['MIXTRAIN_WAREHOUSE']}/{under}/")]


class _s3:
    """This process pointed at the team warehouse (objectstore reads settings from the environment)."""

    def __init__(self, env):
        self.env = env

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        objectstore._filesystem.cache_clear()

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        objectstore._filesystem.cache_clear()


def test_two_homes_share_datasets_and_images(tmp_path, pg_url, s3_env):
    a, b = _team(tmp_path, "a", pg_url, s3_env), _team(tmp_path, "b", pg_url, s3_env)
    src = _images_csv(tmp_path / "data", 3)
    a("dataset", "create", "shapes", "--file", src, check=0)
    assert not (a.home / "warehouse").exists()  # nothing of the dataset on the local disk
    stored = _objects(s3_env, "images")
    assert len(stored) == 3 and all(u.endswith(".png") for u in stored)
    for uri in stored:  # content-addressed: <warehouse>/images/<sha[:2]>/<sha>.png
        sha = uri.rsplit("/", 1)[1].split(".")[0]
        assert uri.endswith(f"/images/{sha[:2]}/{sha}.png")

    b("dataset", "append", "shapes", "--file", _images_csv(tmp_path / "more", 2, start=3), check=0)
    assert _rows(a, "shapes") == _rows(b, "shapes") == 5
    assert len(_objects(s3_env, "images")) == 5
    head = b("dataset", "head", "shapes", "-n", "5", check=0).stdout
    assert "c0" in head and "c4" in head
    q = a("dataset", "query", "shapes", "SELECT count(*) AS n FROM shapes WHERE response = 'c3'", "--json", check=0)
    assert '"n": 1' in q.stdout.replace('"n":1', '"n": 1')

    # home b reads a's stored image through the one image path: cell_refs → s3:// → its image cache
    with home_env(b.home), _s3({**s3_env, "MIXTRAIN_DATABASE_URL": pg_url, "MIXTRAIN_CATALOG_URL": pg_url}):
        from mixtrain.client import MixClient
        from mixtrain.images import resolve_image

        client = MixClient()
        cell = client.datasets.get("shapes").scan(row_filter="response == 'c0'").to_arrow().to_pylist()[0]["image"]
        (ref,) = client.dataset_image_refs("shapes", cell)
        assert ref.startswith(s3_env["MIXTRAIN_WAREHOUSE"] + "/images/")
        local = resolve_image(ref, load_settings().image_cache)
        assert local.is_relative_to(b.home / "cache" / "images")
        assert local.read_bytes() == (tmp_path / "data" / "img0.png").read_bytes()
        mtime = local.stat().st_mtime_ns
        assert resolve_image(ref, load_settings().image_cache).stat().st_mtime_ns == mtime  # downloaded once

    b("dataset", "delete", "shapes", "-y", check=0)
    assert "shapes" not in a("dataset", "list", check=0).stdout
    assert _objects(s3_env, "mixtrain") == []  # the table's files are gone from the bucket


@pytest.mark.parametrize("keys", [READER, ("mixtrain-admin", "not-the-secret-000000")], ids=["read-only", "wrong"])
def test_first_write_with_bad_keys_is_one_line(tmp_path, pg_url, s3_env, keys):
    env = {**s3_env, "AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1]}
    mix = _team(tmp_path, "h", pg_url, env)
    for src in (_images_csv(tmp_path / "img", 2), tmp_path / "plain.csv"):
        if not src.exists():
            src.write_text("a,b\n1,x\n")
        r = mix("dataset", "create", "d1", "--file", src, check=1)
        assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
        assert "S3 keys" in r.stderr and keys[1] not in r.stderr
    admin = _team(tmp_path, "admin", pg_url, s3_env)
    assert admin.json("dataset", "list") == []  # nothing half-committed
    assert _objects(s3_env, "mixtrain") == [] and _objects(s3_env, "images") == []


def test_concurrent_appends_from_two_processes_all_land(tmp_path, pg_url, s3_env):
    mix = _team(tmp_path, "a", pg_url, s3_env)
    src = tmp_path / "rows.csv"
    src.write_text("a,b\n" + "".join(f"{i},x{i}\n" for i in range(50)))
    mix("dataset", "create", "log", "--file", src, check=0)
    procs = [
        subprocess.Popen(
            [str(BIN / "mixtrain"), "dataset", "append", "log", "--file", str(src)],
            env=_team(tmp_path, f"w{i}", pg_url, s3_env).env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert _rows(mix, "log") == 200
    assert len(mix.json("dataset", "versions", "log")) == 4


def test_server_stopped_mid_append(tmp_path, pg_url):
    """Stop the S3 server while an append is storing its images: one clear line, exit 1, the table as it
    was; after a restart the data is there, doctor sweeps the failed append's images, a retry lands."""
    server = WeedServer(tmp_path / "weed")
    server.start()
    try:
        bucket = server.bucket()
        env = server.env(bucket)
        mix = _team(tmp_path, "a", pg_url, env)
        mix("dataset", "create", "d", "--file", _images_csv(tmp_path / "first", 2), check=0)
        big = _images_csv(tmp_path / "big", 400, start=2)
        proc = subprocess.Popen(
            [str(BIN / "mixtrain"), "dataset", "append", "d", "--file", str(big)],
            env=mix.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        fs, images = server.filesystem(), f"{bucket}/wh/images"
        from pyarrow.fs import FileSelector

        deadline = time.monotonic() + 120
        while (
            sum(i.size is not None and i.size > 0 for i in fs.get_file_info(FileSelector(images, recursive=True))) <= 2
        ):
            assert proc.poll() is None, "the append finished before the server could be stopped"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(server.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        _, err = proc.communicate(timeout=300)
        server.stop()
        assert proc.returncode == 1, err
        assert err.startswith("Error: ") and err.count("\n") == 1, err
        assert "cannot be reached" in err and "start the S3 server" in err

        server.start()  # same flags, same data
        assert _rows(mix, "d") == 2 and len(mix.json("dataset", "versions", "d")) == 1  # nothing half-committed
        mix.home.mkdir(parents=True, exist_ok=True)
        assert mix("doctor", check=0).returncode == 0  # the age guard: a write in flight elsewhere is never touched
        with _s3(env):  # a data file of a failed commit, beside the table's own files
            table_dir = objectstore.listing(f"{env['MIXTRAIN_WAREHOUSE']}/mixtrain/")[0].uri.split("/metadata/")[0]
            table_dir = table_dir.split("/data/")[0]
            objectstore.put_bytes(b"PAR1 never committed PAR1", f"{table_dir}/data/00000-0-stray.parquet")
            uploaded = len(objectstore.listing(f"s3://{images}/")) - 2
        r = mix("doctor", "--older-than", "0", check=1)
        assert f"{uploaded + 1} orphan file(s)" in " ".join(r.stdout.split())
        mix("doctor", "--older-than", "0", "--fix", check=0)
        with _s3(env):
            assert len(objectstore.listing(f"s3://{images}/")) == 2  # the committed dataset's two stay
            assert not [e for e in objectstore.listing(table_dir + "/") if "stray" in e.uri]
        assert _rows(mix, "d") == 2 and "c1" in mix("dataset", "head", "d", check=0).stdout  # its files all stay
        mix("dataset", "append", "d", "--file", big, check=0)
        assert _rows(mix, "d") == 402
    finally:
        server.stop(kill=True)


def test_s3_image_references_read_like_urls(tmp_path, pg_url, s3_env, s3_server, s3_bucket):
    """An image cell holding an s3:// URI: kept as the reference (--keep_image_refs, checked by reading it
    from the store) or stored content-addressed like any URL; an s3:// object that is missing is a bad row."""
    fs = s3_server.filesystem()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    with fs.open_output_stream(f"{s3_bucket}/ext/red.png") as out:
        out.write((tmp_path / "red.png").read_bytes())
    src = tmp_path / "refs.csv"
    src.write_text(
        f"image,prompt,response\ns3://{s3_bucket}/ext/red.png,colour?,red\ns3://{s3_bucket}/ext/gone.png,colour?,x\n"
    )
    mix = _team(tmp_path, "a", pg_url, s3_env)
    kept = mix("dataset", "create", "kept", "--file", src, "--keep_image_refs", check=0)
    stored = mix("dataset", "create", "stored", "--file", src, check=0)
    for r in (kept, stored):
        assert "gone.png" in r.stdout + r.stderr and "red.png" not in (r.stdout + r.stderr).replace("gone", "")
    assert f"s3://{s3_bucket}/ext/red.png" in mix("dataset", "head", "kept", check=0).stdout  # kept as written
    assert len(_objects(s3_env, "images")) == 1  # the readable one stored once, content-addressed
