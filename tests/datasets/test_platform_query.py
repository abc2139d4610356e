"""PlatformQueryDataset: a load-only, read-only query handle on the platform, on DuckDB and on PostgreSQL."""

from __future__ import annotations

import duckdb
import pandas as pd
import psycopg2
import pytest
from kedro.io import DataCatalog, DatasetError

from aep_propensity.datasets import PlatformQueryDataset
from aep_propensity.platform import DatasetSpec, PlatformError
from aep_propensity.platform.core.port import INTERACTIVE_ROW_LIMIT
from tests.conftest import platform_config

# A write through a query fails: DuckDB's read-only connection refuses it, PostgreSQL's read-only session
# would too, though wrapping the query in a bounded SELECT already makes it a syntax error there.
WRITE_REFUSED = (duckdb.Error, psycopg2.Error, PlatformError)

SPEC = DatasetSpec.from_config("people", {"identity": "ecid", "columns": {"ecid": "string", "age": "int64"}})
PEOPLE = pd.DataFrame({"ecid": [f"p{i}" for i in range(12)], "age": list(range(20, 32))})


@pytest.fixture
def config(engine_name, platform, tmp_path, request) -> tuple[dict, dict | None]:
    """The catalog's platform block and credentials of the ``platform`` fixture's database."""
    schema = request.getfixturevalue("pg_schema") if engine_name == "postgres" else None
    return platform_config(engine_name, tmp_path, schema)


@pytest.fixture
def people(platform) -> None:
    """A small table on the platform."""
    platform.ingest(SPEC, [PEOPLE])


def test_load_queries_in_the_canonical_dialect(config, people):
    platform, credentials = config
    queries = PlatformQueryDataset(platform=platform, credentials=credentials).load()
    # DuckDB's dialect (a string function and a cast that PostgreSQL spells differently), transpiled for the engine.
    frame = queries.query(
        "SELECT ecid, age, CAST(age AS VARCHAR) AS text FROM \"people\" WHERE starts_with(ecid, 'p1') ORDER BY age"
    )
    assert frame["ecid"].tolist() == ["p1", "p10", "p11"]
    assert frame["text"].tolist() == ["21", "30", "31"]
    assert queries.row_limit == INTERACTIVE_ROW_LIMIT == 50_000


def test_queries_are_capped_and_read_only(config, people):
    platform, credentials = config
    queries = PlatformQueryDataset(platform={**platform, "interactive_row_limit": 10}, credentials=credentials).load()
    assert len(queries.query('SELECT * FROM "people" LIMIT 10')) == 10
    with pytest.raises(PlatformError, match="more than 10 rows"):
        queries.query('SELECT * FROM "people"')
    with pytest.raises(WRITE_REFUSED):
        queries.query('DELETE FROM "people"')
    assert queries.query('SELECT COUNT(*) AS n FROM "people"')["n"].tolist() == [12]


def test_nothing_connects_until_a_query_runs(tmp_path):
    dataset = PlatformQueryDataset(
        platform={"backend": "postgres", "schema": "nowhere"}, credentials={"dsn": "postgresql://nobody@127.0.0.1:1/x"}
    )
    queries = dataset.load()
    assert "PostgresEngine" in repr(queries)
    with pytest.raises(ConnectionError):
        queries.query("SELECT 1")
    duckdb_path = tmp_path / "platform.duckdb"
    PlatformQueryDataset(platform={"backend": "duckdb", "path": str(duckdb_path)}).load()
    assert not duckdb_path.exists()


def test_save_is_refused_and_the_catalog_builds_it(config):
    platform, credentials = config
    catalog = DataCatalog.from_config(
        {
            "platform_queries": {
                "type": "aep_propensity.datasets.PlatformQueryDataset",
                "platform": platform,
                "credentials": "platform",
            }
        },
        credentials={"platform": credentials or {}},
    )
    with pytest.raises(DatasetError, match="read-only"):
        catalog.save("platform_queries", 'DELETE FROM "people"')
    assert catalog.load("platform_queries").query("SELECT 1 AS one")["one"].tolist() == [1]
    described = str(catalog.get("platform_queries"))
    assert "PlatformQueryDataset" in described and platform["backend"] in described
