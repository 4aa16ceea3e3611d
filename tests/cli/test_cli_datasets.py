"""Dataset commands exactly as the spec writes them, and the spec's Python form."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

# The spec's own example CSV ("Example Dataset Structure"), plus a cell with a quoted newline.
SPEC_CSV = """image_path,prompt,response
/data/images/cat.jpg,"Describe this image","A fluffy orange cat sitting on a windowsill looking outside"
/data/images/dog.jpg,"What animal is this?","This is a golden retriever dog playing in a park"
/data/images/car.jpg,"What color is the vehicle?","The vehicle is red"
/data/images/bus.jpg,"Describe it, briefly","A yellow bus, parked.
It has two doors."
"""

MORE_CSV = """image_path,prompt,response
/data/images/owl.jpg,"What bird is this?","An owl"
"""


SPEC_STEP_1 = """set -e
cat > training_data.csv << EOF
image_path,prompt,response
/data/vlm/cat1.jpg,"What animal is this?","This is a domestic cat"
/data/vlm/dog1.jpg,"Describe the scene","A dog playing fetch in a park"
EOF

mixtrain dataset create vlm-training-data --file training_data.csv
mixtrain dataset list
"""


def test_dataset_lifecycle_as_in_the_spec(mix, tmp_path):
    # Step 1 of the spec's "Example: Complete Workflow", pasted into bash as written.
    proc = subprocess.run(
        ["bash", "-c", SPEC_STEP_1], cwd=tmp_path, env=mix.env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Created dataset vlm-training-data" in proc.stdout and "2 rows" in proc.stdout and "3 columns" in proc.stdout
    listing = proc.stdout.split("\n", 1)[1]
    assert "vlm-training-data" in listing

    info = json.loads(mix("dataset", "get", "vlm-training-data", "--json", check=0).stdout)
    assert info["rows"] == 2 and info["versions"] == 1
    assert [c["name"] for c in info["columns"]] == ["image_path", "prompt", "response"]
    assert all(c["type"] == "string" for c in info["columns"])
    assert info["source"].endswith("training_data.csv")
    first_version = info["version"]

    (tmp_path / "more.csv").write_text(MORE_CSV)
    proc = mix("dataset", "append", "vlm-training-data", "more.csv", check=0)
    assert "3 rows" in proc.stdout

    versions = json.loads(mix("dataset", "versions", "vlm-training-data", "--json", check=0).stdout)
    assert [v["total_rows"] for v in versions] == [2, 3]
    assert versions[0]["version"] == first_version and versions[1]["added_rows"] == 1

    head = mix("dataset", "head", "vlm-training-data", "-n", "2", check=0).stdout
    assert head.count("│ /data/") == 2, head  # scan order across data files is not defined
    old = mix("dataset", "head", "vlm-training-data", "-n", "10", "--version", first_version, check=0).stdout
    assert "owl.jpg" not in old and "cat1.jpg" in old and "dog1.jpg" in old

    location = Path(info["location"].removeprefix("file://"))
    assert location.exists()
    proc = mix("dataset", "delete", "vlm-training-data", "-y", check=0)
    assert "Deleted" in proc.stdout
    assert "not found" in mix("dataset", "get", "vlm-training-data", check=1).stderr
    assert not any(p.is_file() for p in location.rglob("*")), "delete left data files behind"


def test_python_form_from_the_spec(home, tmp_path):
    """``mixtrain.MixClient().get_dataset("my-data").scan().to_pandas()`` — in this process, like a notebook."""
    import mixtrain

    (tmp_path / "data.csv").write_text(SPEC_CSV)
    mixtrain.MixClient().create_dataset("my-data", tmp_path / "data.csv")
    df = mixtrain.MixClient().get_dataset("my-data").scan().to_pandas()
    assert list(df.columns) == ["image_path", "prompt", "response"]
    assert len(df) == 4
    assert df.loc[3, "prompt"] == "Describe it, briefly"
    assert df.loc[3, "response"] == "A yellow bus, parked.\nIt has two doors."
    assert mixtrain.MixClient().list_datasets() == ["my-data"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "tsv"])
def test_other_formats(home, tmp_path, fmt):
    import pandas as pd

    import mixtrain

    df = pd.DataFrame({"image_path": ["a.jpg", "b.jpg"], "prompt": ["p1", "p, 2"], "response": ["r1", "r2"]})
    path = tmp_path / f"data.{fmt}"
    if fmt == "parquet":
        df.to_parquet(path)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_csv(path, sep="\t", index=False)
    mixtrain.MixClient().create_dataset(f"d-{fmt}", path)
    back = mixtrain.MixClient().get_dataset(f"d-{fmt}").scan().to_pandas()
    assert back.to_dict("records") == df.to_dict("records")


def test_empty_strings_stay_strings(home, tmp_path):
    """An empty cell in a text column is an empty string, not a null (only all-empty columns are refused)."""
    import mixtrain

    (tmp_path / "d.csv").write_text('image_path,prompt,response\na.jpg,,r1\nb.jpg,"",r2\nc.jpg,p,r3\n')
    mixtrain.MixClient().create_dataset("blanks", tmp_path / "d.csv")

    df = mixtrain.MixClient().get_dataset("blanks").scan().to_pandas()
    assert sorted(df["prompt"].tolist()) == ["", "", "p"]


def test_registered_iceberg_table_is_forgotten_not_purged(mix, tmp_path):
    """`dataset create --iceberg` copies nothing, so `dataset delete` must not delete the user's own files."""
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

    wh = tmp_path / "their-warehouse"
    wh.mkdir()
    cat = SqlCatalog("theirs", uri=f"sqlite:///{tmp_path}/theirs.db", warehouse=wh.as_uri())
    cat.create_namespace("ns")
    table = cat.create_table("ns.t", schema=pa.schema([("image_path", pa.string()), ("prompt", pa.string())]))
    table.append(pa.table({"image_path": ["a.png", "b.png"], "prompt": ["p1", "p2"]}))
    mix("dataset", "create", "theirs", "--iceberg", table.metadata_location, check=0)
    assert "b.png" in mix("dataset", "head", "theirs", check=0).stdout
    mix("dataset", "delete", "theirs", "-y", check=0)
    assert "theirs" not in mix("dataset", "list", check=0).stdout
    assert cat.load_table("ns.t").scan().to_arrow().num_rows == 2  # their table and files are intact
