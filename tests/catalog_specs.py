"""The dataset schemas the project's catalog declares (conf/base), for tests that ingest like the pipelines."""

from __future__ import annotations

from functools import cache

import yaml

from aep_propensity.platform import DatasetSpec
from tests.conftest import PROJECT


@cache
def catalog_spec(table: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a platform table with a ``schema`` under ``_platform_tables`` in conf/base."""
    for path in sorted((PROJECT / "conf" / "base").glob("catalog*.yml")):
        tables = (yaml.safe_load(path.read_text()) or {}).get("_platform_tables") or {}
        if (tables.get(table) or {}).get("schema"):
            return DatasetSpec.from_config(table, tables[table]["schema"])
    raise KeyError(f"no platform table {table!r} with a schema in conf/base")
