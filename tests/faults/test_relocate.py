"""#20 §1: a home can move — `mv`, `cp -a`, a backup restored elsewhere — and `doctor --fix` never
destroys data. #20 §2: a table file that vanished is one "damaged" line on every read path.

Every case drives the real CLI on a real home (SQLite metadata DB, Iceberg catalog + warehouse, a
workflow run by the real runner); a registered model's adapter folder is an ordinary folder in the
home's workspace (what a fine-tune registers), made through the registry itself.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from harness import Mix, home_env
from harness.faults import clean_error, files_under

FLOW = (
    "from mixtrain import MixFlow\n\n"
    "class Hello(MixFlow):\n"
    "    def run(self, who: str = 'bob'):\n"
    "        print('hello', who)\n"
    "        return {'greeted': who}\n"
)


def _populate(mix: Mix) -> None:
    (mix.root / "d.csv").write_text("image,text\na.png,first\nb.png,second\n")
    (mix.root / "more.csv").write_text("image,text\nc.png,third\n")
    (mix.root / "hello.py").write_text(FLOW)
    mix("dataset", "create", "pets", mix.root / "d.csv", check=0)
    mix("dataset", "append", "pets", mix.root / "more.csv", check=0)
    mix("workflow", "create", mix.root / "hello.py", "--name", "hello", check=0)
    mix("workflow", "run", "hello", "--who", "ann", check=0)
    _register_model(mix.home, "tuned")


def _register_model(home: Path, name: str) -> Path:
    from mixtrain.models.registry import ModelRegistry
    from mixtrain.settings import load_settings

    with home_env(home):
        settings = load_settings()
        adapter = settings.workspace / "output" / f"{name}-1"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text('{"r": 8}')
        ModelRegistry(settings).register(
            name, base_model="tiny-base", model_type="llava", adapter_path=str(adapter), train_loss=0.5, lineage={}
        )
    return adapter


def _all_readable(mix: Mix, rows: int = 3) -> None:
    """Datasets, the model, the workflow and its run all read from ``mix.home`` — never from elsewhere."""
    head = mix("dataset", "head", "pets", check=0).stdout
    assert "first" in head and "third" in head, head
    info = mix.json("dataset", "get", "pets")
    assert info["rows"] == rows and info["location"].startswith(mix.home.as_uri()), info
    got = mix("dataset", "query", "pets", "SELECT count(*) AS n FROM pets", "--json", check=0).stdout
    assert json.loads(got)[0]["n"] == rows, got
    model = mix.json("model", "get", "tuned")
    assert Path(model["adapter_path"]).is_relative_to(mix.home) and Path(model["adapter_path"]).is_dir(), model
    runs = mix.json("workflow", "runs", "hello")
    assert runs[0]["status"] == "completed" and Path(runs[0]["run_dir"]).is_relative_to(mix.home), runs
    assert "hello ann" in mix("workflow", "logs", "hello", "1", check=0).stdout
    wf = mix.json("workflow", "get", "hello")
    assert Path(wf["versions"][0]["source"]).is_relative_to(mix.home), wf


def _doctor_keeps_everything(mix: Mix) -> None:
    before = files_under(mix.home / "warehouse")
    doc = mix("doctor", "--older-than", "0")
    assert doc.returncode == 0 and "✖" not in doc.stdout and "orphan file(s)" not in doc.stdout, doc.stdout
    mix("doctor", "--fix", "--older-than", "0", check=0)
    assert files_under(mix.home / "warehouse") == before


def _move(src: Path, dst: Path, how: str) -> None:
    if how == "mv":
        subprocess.run(["mv", str(src), str(dst)], check=True)
    elif how == "cp -a":
        subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    else:  # a backup restored to another path; the original is gone
        archive = src.parent / "backup.tar"
        subprocess.run(["tar", "-C", str(src.parent), "-cf", str(archive), src.name], check=True)
        shutil.rmtree(src)
        dst.mkdir()
        subprocess.run(["tar", "-C", str(dst), "--strip-components=1", "-xf", str(archive)], check=True)


@pytest.mark.parametrize("how", ["mv", "cp -a", "restore"])
def test_a_moved_copied_or_restored_home_just_works(mix, tmp_path, how):
    _populate(mix)
    _all_readable(mix)
    original = files_under(mix.home)
    moved = Mix(tmp_path, tmp_path / "elsewhere" / "home2")
    moved.home.parent.mkdir()
    _move(mix.home, moved.home, how)

    _all_readable(moved)
    _doctor_keeps_everything(moved)
    _all_readable(moved)
    # it keeps working as a home: writes land in the new place (and a copy never touches the original)
    moved("dataset", "append", "pets", tmp_path / "more.csv", check=0)
    moved("workflow", "run", "hello", "--who", "bo", check=0)
    assert moved.json("workflow", "runs", "hello")[0]["status"] == "completed"
    assert moved.json("dataset", "get", "pets")["rows"] == 4
    if how == "cp -a":
        moved("dataset", "delete", "pets", "-y", check=0)
        moved("model", "delete", "tuned", "-y", check=0)
        assert files_under(mix.home) == original, "the copy changed the original home"
        _all_readable(mix)


def _make_legacy(home: Path) -> None:
    """What mixtrain before relative paths left: absolute paths in every Iceberg file and every row.

    The table is written by PyIceberg itself with an absolute location (as the old code did); the
    metadata DB's paths are made absolute and its schema put back at revision 0003.
    """
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

    wh = (home / "warehouse").as_uri()
    cat = SqlCatalog("mixtrain", uri=f"sqlite:///{home / 'catalog.db'}", warehouse=wh)
    data = pa.table({"image": ["x.png", "y.png"], "text": ["old one", "old two"]})
    txn = cat.create_table_transaction(
        ("mixtrain", "legacy"), schema=data.schema, location=f"{wh}/mixtrain/legacy.0123456789ab"
    )
    txn.append(data)
    txn.commit_transaction()
    cat.load_table(("mixtrain", "legacy")).append(data)
    cat.engine.dispose()
    db = sqlite3.connect(home / "mixtrain.db")
    with db:
        db.execute("UPDATE runs SET run_dir = ? || '/' || run_dir", (str(home),))
        db.execute("UPDATE workflow_versions SET source_dir = ? || '/' || source_dir", (str(home),))
        db.execute("UPDATE model_versions SET adapter_path = ? || '/' || adapter_path", (str(home),))
        db.execute("UPDATE alembic_version SET version_num = '0003'")
    db.close()


def test_a_home_written_with_absolute_paths_migrates_on_first_open_after_a_move(mix, tmp_path):
    _populate(mix)
    _make_legacy(mix.home)
    moved = Mix(tmp_path, tmp_path / "home2")
    shutil.move(mix.home, moved.home)

    doc = moved("doctor", "--older-than", "0")
    assert doc.returncode == 0 and "the home was moved or copied" in doc.stdout, doc.stdout
    assert str(mix.home / "warehouse") in doc.stdout and "orphan file(s)" not in doc.stdout, doc.stdout
    _doctor_keeps_everything(moved)
    _all_readable(moved)
    head = moved("dataset", "head", "legacy", check=0).stdout
    assert "old one" in head and "old two" in head, head
    moved("dataset", "append", "legacy", tmp_path / "more.csv", "--image_column", "image", check=None)
    assert moved.json("dataset", "get", "legacy")["rows"] in (4, 5)
    with sqlite3.connect(moved.home / "mixtrain.db") as db:  # migrated: stored relative to the home
        assert db.execute("SELECT run_dir FROM runs").fetchone()[0] == "runs/hello/1"
        assert db.execute("SELECT adapter_path FROM model_versions").fetchone()[0] == "axolotl_workspace/output/tuned-1"
    # moved again: the recorded former prefix still maps the legacy table's files
    third = Mix(tmp_path, tmp_path / "home3")
    shutil.move(moved.home, third.home)
    assert "old two" in third("dataset", "head", "legacy", check=0).stdout
    _doctor_keeps_everything(third)


def test_doctor_fix_never_deletes_files_of_a_table_it_cannot_place(mix, tmp_path):
    """A moved legacy home whose table lost its metadata file: the catalog points at the old home, so
    the table's data files look unreferenced — they are not provably garbage and must stay."""
    _populate(mix)
    _make_legacy(mix.home)
    legacy = mix.home / "warehouse" / "mixtrain" / "legacy.0123456789ab"
    for meta in (legacy / "metadata").glob("*.metadata.json"):
        meta.unlink()
    moved = Mix(tmp_path, tmp_path / "home2")
    shutil.move(mix.home, moved.home)
    kept = files_under(moved.home / "warehouse" / "mixtrain" / legacy.name)
    assert any(k.endswith(".parquet") for k in kept)
    doc = moved("doctor", "--older-than", "0")
    assert doc.returncode == 1 and "legacy" in doc.stdout and "Traceback" not in doc.stdout + doc.stderr, doc.stdout
    moved("doctor", "--fix", "--older-than", "0")
    assert files_under(moved.home / "warehouse" / "mixtrain" / legacy.name) == kept
    _all_readable(moved)


@pytest.mark.parametrize(
    "args",
    [
        ["dataset", "head", "tr"],
        ["dataset", "query", "tr", "SELECT * FROM tr"],
        ["dataset", "query", "tr", "SELECT count(*) FROM tr", "--save", "counted"],
        ["dataset", "append", "tr", "ROWS"],
    ],
    ids=["head", "query", "query-save", "append"],
)
@pytest.mark.parametrize("fault", ["vanished", "truncated"])
def test_a_vanished_or_corrupt_data_file_is_one_damaged_line_on_every_read(mix, args, fault):
    (mix.root / "rows.csv").write_text("image,text\na.png,one\nb.png,two\n")
    mix("dataset", "create", "tr", mix.root / "rows.csv", check=0)
    for f in (mix.home / "warehouse" / "mixtrain").glob("tr.*/data/*.parquet"):
        f.unlink() if fault == "vanished" else f.write_bytes(f.read_bytes()[:100])
    argv = [mix.root / "rows.csv" if a == "ROWS" else a for a in args]
    proc = mix(*argv)
    if args[1] == "append":  # appending needs no old data file: it works, and the next read says damaged
        assert proc.returncode == 0, proc.stderr
        proc = mix("dataset", "head", "tr")
    state = "is missing" if fault == "vanished" else "is corrupt"
    clean_error(proc, "dataset 'tr' is damaged", f".parquet {state}", "mixtrain dataset delete tr -y")
    doc = mix("doctor")
    assert doc.returncode == 1 and f"{state.split()[-1]} file(s)" in doc.stdout, doc.stdout


def test_a_garbled_manifest_is_one_damaged_line(mix):
    (mix.root / "rows.csv").write_text("image,text\na.png,one\n")
    mix("dataset", "create", "tr", mix.root / "rows.csv", check=0)
    for f in (mix.home / "warehouse" / "mixtrain").glob("tr.*/metadata/*.avro"):
        f.write_bytes(b"garbage")
    clean_error(mix("dataset", "head", "tr"), "dataset 'tr' is damaged", ".avro is corrupt")
    doc = mix("doctor")
    assert doc.returncode == 1 and ".avro is corrupt" in doc.stdout and "Traceback" not in doc.stdout, doc.stdout


def test_a_vanished_data_file_fails_prepare_eval_and_dashboard_with_the_same_line(mix):
    """The fine-tune's prepare and the eval job read through the same FileIO; the dashboard shows the line."""
    from fastapi.testclient import TestClient

    from mixtrain.client import MixClient
    from mixtrain.errors import Damaged
    from mixtrain.evals.job import load_rows as eval_rows
    from mixtrain.settings import load_settings
    from mixtrain.ui.app import create_app
    from mixtrain.vlm.prepare import load_rows as prepare_rows
    from mixtrain.vlm.spec import FinetuneSpec

    (mix.root / "rows.csv").write_text("image,prompt,response\na.png,what,one\nb.png,what,two\n")
    mix("dataset", "create", "tr", mix.root / "rows.csv", "--keep_image_refs", check=0)
    for f in (mix.home / "warehouse" / "mixtrain").glob("tr.*/data/*.parquet"):
        f.unlink()
    with home_env(mix.home):
        client = MixClient(load_settings())
        snapshot = client.datasets.get("tr").current_snapshot().snapshot_id
        spec = FinetuneSpec(dataset_name="tr", base_model="m", output_model_name="o", image_column="image")
        with pytest.raises(Damaged, match="dataset 'tr' is damaged"):
            prepare_rows(client.datasets, spec, log=lambda *a: None)
        rec = {
            "dataset": "tr",
            "snapshot_id": snapshot,
            "config": {
                "image_column": "image",
                "prompt_column": "prompt",
                "reference_column": "response",
                "limit": None,
            },
        }
        with pytest.raises(Damaged, match="dataset 'tr' is damaged"):
            eval_rows(client.datasets, rec)
        page = TestClient(create_app(client), base_url="http://127.0.0.1").get("/datasets/tr")
        assert page.status_code in (400, 404, 409, 500) and "is damaged" in page.text and "Traceback" not in page.text


@pytest.mark.parametrize("fault", ["vanished", "garbled"])
def test_a_vanished_or_garbled_table_metadata_file_is_one_damaged_line(mix, fault):
    """The table's metadata JSON (read without PyArrow, see datasets/fileio) fails every read the same way."""
    (mix.root / "rows.csv").write_text("image,text\na.png,one\n")
    mix("dataset", "create", "tr", mix.root / "rows.csv", check=0)
    for f in (mix.home / "warehouse" / "mixtrain").glob("tr.*/metadata/*.metadata.json"):
        f.unlink() if fault == "vanished" else f.write_text('{"garb')
    state = ".metadata.json is missing" if fault == "vanished" else "its table metadata cannot be read"
    for args in (["dataset", "list"], ["dataset", "get", "tr"], ["dataset", "head", "tr"]):
        clean_error(mix(*args), "dataset 'tr' is damaged", state, "mixtrain dataset delete tr -y")
    mix("dataset", "delete", "tr", "-y", check=0)
    assert "No datasets yet" in mix("dataset", "list", check=0).stdout
