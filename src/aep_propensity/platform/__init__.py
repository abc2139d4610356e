"""The Platform port and its backends; :func:`make_platform` builds one from catalog configuration."""

from __future__ import annotations

from typing import Any

from .engines import DuckDBEngine, PostgresEngine
from .local import LocalPlatform
from .local_audiences import ProfileSource
from .port import (
    ActivationRequest,
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    BatchRecord,
    Column,
    DatasetSpec,
    Delivery,
    ExportRecord,
    Platform,
    PlatformError,
    SchemaMismatchError,
    TableHandle,
)

__all__ = [
    "ActivationRequest",
    "AudienceDefinition",
    "AudienceJob",
    "AudienceRecord",
    "Delivery",
    "ProfileSource",
    "BatchRecord",
    "Column",
    "DatasetSpec",
    "ExportRecord",
    "LocalPlatform",
    "Platform",
    "PlatformError",
    "SchemaMismatchError",
    "TableHandle",
    "make_platform",
]


def make_platform(config: dict[str, Any], credentials: dict[str, Any] | None = None) -> LocalPlatform:
    """Build the platform that ``config`` names.

    ``config`` is the catalog's ``platform`` block: ``{backend: duckdb, path, memory_limit, threads}``
    or ``{backend: postgres, schema}``; PostgreSQL's DSN comes from ``credentials["dsn"]``.
    Nothing connects here: connections are opened per operation.
    """
    options = dict(config)
    backend = options.pop("backend", "duckdb")
    platform_options = {
        key: options.pop(key) for key in ("export_rows_per_file", "interactive_row_limit") if key in options
    }
    if backend == "duckdb":
        engine: DuckDBEngine | PostgresEngine = DuckDBEngine(**options)
    elif backend == "postgres":
        dsn = (credentials or {}).get("dsn")
        if not dsn:
            raise ValueError("the postgres platform needs credentials with a 'dsn' (see conf/postgres/credentials.yml)")
        engine = PostgresEngine(dsn, **options)
    else:
        raise ValueError(f"unknown platform backend {backend!r}; use 'duckdb' or 'postgres'")
    return LocalPlatform(engine, **platform_options)
