"""dataset query: DuckDB SQL over a dataset's snapshot (PyIceberg planning, pushdown into the Parquet reads)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixtrain.client import MixClient
from mixtrain.errors import InvalidInput, NotFound
from mixtrain.settings import load_settings


@pytest.fixture
def client(home, tmp_path) -> MixClient:
    c = MixClient(load_settings())
    pq.write_table(pa.table({"label": ["a", "b", "a", "c"], "n": [1, 2, 3, 4]}), tmp_path / "one.parquet")
    c.create_dataset("my-data", tmp_path / "one.parquet")
    return c


def test_group_by_filter_and_snapshots(client, tmp_path):
    first = client.get_dataset("my-data").current_snapshot().snapshot_id
    pq.write_table(pa.table({"label": ["a"], "n": [10]}), tmp_path / "two.parquet")
    client.datasets.append("my-data", tmp_path / "two.parquet")
    sql = "SELECT label, sum(n) AS total FROM my-data WHERE n > 1 GROUP BY label ORDER BY label"
    assert client.query(sql).to_pylist() == [
        {"label": "a", "total": 13},
        {"label": "b", "total": 2},
        {"label": "c", "total": 4},
    ]
    # the snapshot the dataset had before the append
    old = client.query(sql, dataset="my-data", snapshot_id=first).to_pylist()
    assert old[0] == {"label": "a", "total": 3}
    with pytest.raises(NotFound, match="no snapshot 123"):
        client.query(sql, dataset="my-data", snapshot_id=123)


def test_bad_sql_is_one_line(client):
    with pytest.raises(InvalidInput, match=r"^bad SQL: .*nosuch") as err:
        client.query("SELECT nosuch FROM my-data")
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidInput, match="names no dataset"):
        client.query("SELECT 1")


def test_cli_query_json_limit_and_save(client, mix):
    out = mix(
        "dataset", "query", "my-data", "SELECT label, n FROM my-data ORDER BY n", "--json", "--limit", "2", check=0
    )
    assert json.loads(out.stdout) == [{"label": "a", "n": 1}, {"label": "b", "n": 2}]
    saved = mix("dataset", "query", "my-data", "SELECT * FROM my-data WHERE label = 'a'", "--save", "only-a", check=0)
    assert "Saved 2 rows as dataset only-a" in saved.stdout
    info = json.loads(mix("dataset", "get", "only-a", "--json", check=0).stdout)
    assert (
        info["rows"] == 2
        and "query of my-data at snapshot" in info["description"]
        and "label = 'a'" in info["description"]
    )
    bad = mix("dataset", "query", "my-data", "SELEC * FROM my-data", check=1)
    assert bad.stderr.startswith("Error: bad SQL:") and len(bad.stderr.strip().splitlines()) == 1
