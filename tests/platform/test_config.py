"""The platform's configuration: one validated model per backend, and one platform per configuration."""

from __future__ import annotations

import pytest
from kedro.io import DatasetError

from aep_propensity.datasets import PlatformQueryDataset, PlatformTableDataset
from aep_propensity.platform import make_platform, parse_platform_config
from aep_propensity.platform.local import DuckDBEngine, LocalPlatform

TABLES = {"people": {"layer": "raw"}}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"backend": "duckdb", "path": "x.duckdb", "memroy_limit": "1GB"}, "platform.memroy_limit: Extra inputs"),
        ({"backend": "sqlite"}, "platform.backend: Input tag 'sqlite'"),
        ({"path": "x.duckdb"}, "platform.backend: Unable to extract tag"),
        ({"backend": "duckdb"}, "platform.path: Field required"),
        ({"backend": "aep", "sandbox": "prod", "retries": -1}, "platform.retries: Input should be greater"),
        ({"backend": "aep", "query_dialect": "tsql"}, "platform.query_dialect"),
    ],
)
def test_a_bad_configuration_names_the_key(config, message):
    with pytest.raises(ValueError, match=f"invalid platform configuration: {message}"):
        parse_platform_config(config)


def test_each_backend_gets_its_own_model():
    duckdb = parse_platform_config({"backend": "duckdb", "path": "p.duckdb", "threads": 1})
    postgres = parse_platform_config({"backend": "postgres", "schema": "s"})
    aep = parse_platform_config({"backend": "aep", "sandbox": "prod"})
    assert (duckdb.threads, duckdb.memory_limit) == (1, "4GB")
    assert postgres.db_schema == "s"
    assert (aep.query_dialect, aep.flatten_paths, aep.sslmode) == ("spark", False, "require")


def test_credentials_that_a_backend_needs_are_asked_for_by_name():
    with pytest.raises(ValueError, match="AEP_PROPENSITY_PG_DSN"):
        make_platform({"backend": "postgres"}, {})
    with pytest.raises(ValueError, match="AEP_SANDBOX"):
        make_platform({"backend": "aep"}, {"client_id": "c", "client_secret": "s", "org_id": "o"})
    with pytest.raises(ValueError, match=r"credentials \['client_secret'\]"):
        make_platform({"backend": "aep", "sandbox": "prod"}, {"client_id": "c", "org_id": "o"})


def test_make_platform_builds_the_named_backend(tmp_path):
    platform = make_platform({"backend": "duckdb", "path": str(tmp_path / "p.duckdb"), "threads": 1})
    assert isinstance(platform, LocalPlatform) and isinstance(platform.engine, DuckDBEngine)
    assert platform.engine.threads == 1 and platform.interactive_row_limit == 50_000


def test_datasets_share_one_platform_per_configuration(tmp_path):
    config = {"backend": "duckdb", "path": str(tmp_path / "p.duckdb")}
    first = PlatformTableDataset(table="people", view="handle", tables=TABLES, platform=config)
    second = PlatformQueryDataset(platform=dict(config))
    other = PlatformTableDataset(
        table="people", view="pandas", tables=TABLES, platform={**config, "path": str(tmp_path / "q.duckdb")}
    )
    assert first._platform is second._platform
    assert first._platform is not other._platform
    assert first.metadata == {"kedro-viz": {"layer": "raw"}}


def test_a_dataset_reports_a_bad_platform_block_when_the_catalog_is_made(tmp_path):
    with pytest.raises(DatasetError, match="people: invalid platform configuration: platform.treads"):
        PlatformTableDataset(
            table="people", tables=TABLES, platform={"backend": "duckdb", "path": "p.duckdb", "treads": 2}
        )


def test_a_view_of_an_undeclared_table_is_a_clear_error():
    with pytest.raises(DatasetError, match="table 'peeple' is not declared under _platform_tables"):
        PlatformTableDataset(table="peeple", tables=TABLES, platform={"backend": "duckdb", "path": "p.duckdb"})
    with pytest.raises(DatasetError, match="the view must be one of"):
        PlatformTableDataset(
            table="people", view="csv", tables=TABLES, platform={"backend": "duckdb", "path": "p.duckdb"}
        )
