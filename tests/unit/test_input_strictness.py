"""Awkward input: CSV text stays text, appends match columns by name, strict names, settings and params."""

from __future__ import annotations

import pytest

from mixtrain.client import MixClient
from mixtrain.errors import InvalidInput
from mixtrain.names import check_name, check_secret_name
from mixtrain.settings import load_settings
from mixtrain.vlm.spec import parse_spec


def test_csv_cells_are_kept_as_written(home, tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('image_path,prompt,response\na.png,"007",true\nb.png,12345678901234567890,"naïve, ünïcode"\n')
    c = MixClient(load_settings())
    c.create_dataset("text", f)
    df = c.get_dataset("text").scan().to_pandas()
    assert df.prompt.tolist() == ["007", "12345678901234567890"]
    assert df.response.tolist() == ["true", "naïve, ünïcode"]


def test_append_matches_columns_by_name_and_rejects_other_types(home, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    c = MixClient(load_settings())
    (tmp_path / "a.csv").write_text("image_path,prompt,response\na.png,p,r\n")
    (tmp_path / "b.csv").write_text("response,image_path,prompt\nr2,b.png,p2\n")
    c.create_dataset("d", tmp_path / "a.csv")
    c.datasets.append("d", tmp_path / "b.csv")
    assert sorted(c.get_dataset("d").scan().to_pandas().image_path.tolist()) == ["a.png", "b.png"]
    pq.write_table(pa.table({"n": [1, 2]}), tmp_path / "n.parquet")
    c.create_dataset("nums", tmp_path / "n.parquet")
    (tmp_path / "words.csv").write_text("n\nnot-a-number\n")
    with pytest.raises(InvalidInput, match="column types do not match"):
        c.datasets.append("nums", tmp_path / "words.csv")
    assert c.get_dataset("nums").scan().to_arrow().num_rows == 2


def test_all_empty_text_column_is_rejected(home, tmp_path):
    (tmp_path / "e.csv").write_text('a,b\n1,""\n2,""\n')
    with pytest.raises(InvalidInput, match="no values: b"):
        MixClient(load_settings()).create_dataset("e", tmp_path / "e.csv")


@pytest.mark.parametrize("name", ["name\n", "a/b", "UPPER", "", "x" * 65, "-lead"])
def test_bad_resource_names(name):
    with pytest.raises(InvalidInput):
        check_name(name, "dataset")


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "PYTHONPATH", "MIXTRAIN_HOME", "KEY\n", "1ABC"])
def test_bad_secret_names(name):
    with pytest.raises(InvalidInput):
        check_secret_name(name)


def test_config_file_is_strict(home):
    home.mkdir(parents=True)
    (home / "config.toml").write_text('databse_url = "sqlite:///x.db"\n')
    with pytest.raises(InvalidInput, match=r"unknown setting.*databse_url"):
        load_settings()
    (home / "config.toml").write_text("database_url = \n")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_settings()
    (home / "config.toml").write_text(f'database_url = "sqlite:///{home}/other.db"\n')
    s = load_settings()
    assert s.database_url.endswith("other.db") and s.sources["database_url"] == "config file"


@pytest.mark.parametrize(
    "field,value",
    [
        ("learning_rate", float("inf")),
        ("learning_rate", float("nan")),
        ("seed", -1),
        ("seed", 2**32),
        ("lora_r", 10**6),
    ],
)
def test_finetune_rejects_absurd_values(field, value):
    with pytest.raises(InvalidInput, match=field):
        parse_spec({"dataset_name": "d", "output_model_name": "m", field: value})
