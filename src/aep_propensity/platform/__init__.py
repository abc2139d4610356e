"""The Platform port and its backends; :func:`make_platform` builds one from catalog configuration."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .aep import AEPClient, AEPPlatform, Credentials
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


def make_platform(config: dict[str, Any], credentials: dict[str, Any] | None = None) -> Platform:
    """Build the platform that ``config`` names.

    ``config`` is the catalog's ``platform`` block: ``{backend: duckdb, path, memory_limit, threads}``,
    ``{backend: postgres, schema}`` (PostgreSQL's DSN from ``credentials["dsn"]``) or ``{backend: aep,
    base_url, ims_url, sandbox, tenant, query_dialect, flatten_paths, sslmode, ...}`` (the OAuth
    credential from ``credentials``: client_id, client_secret, org_id, scopes).
    Nothing connects here: connections are opened per operation.
    """
    options = dict(config)
    backend = options.pop("backend", "duckdb")
    if backend == "aep":
        return _make_aep(options, credentials or {})
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
        raise ValueError(f"unknown platform backend {backend!r}; use 'duckdb', 'postgres' or 'aep'")
    return LocalPlatform(engine, **platform_options)


_FROM_CREDENTIALS = ("sandbox", "tenant", "base_url", "ims_url")
_CLIENT_OPTIONS = (
    "base_url",
    "ims_url",
    "timeout_seconds",
    "retries",
    "backoff_factor",
    "poll_interval_seconds",
    "poll_timeout_seconds",
    "max_retry_after_seconds",
)


def _make_aep(options: dict[str, Any], credentials: dict[str, Any]) -> Platform:
    """The ``aep`` backend; its HTTP client (and so its cached token) is shared by equal configurations.

    ``sandbox``, ``tenant``, ``base_url`` and ``ims_url`` may come from the credentials (that is, from
    environment variables), which then take precedence over the platform block.
    """
    options.update({key: credentials[key] for key in _FROM_CREDENTIALS if credentials.get(key)})
    sandbox = options.pop("sandbox", None)
    if not sandbox:
        raise ValueError("the aep platform needs a sandbox (platform.sandbox, or the credentials' sandbox)")
    client_options = tuple(sorted((key, options.pop(key)) for key in _CLIENT_OPTIONS if key in options))
    client = _aep_client(Credentials.from_config(credentials), str(sandbox).lower(), client_options)
    return AEPPlatform(client, **options)


@lru_cache(maxsize=8)
def _aep_client(credentials: Credentials, sandbox: str, options: tuple[tuple[str, Any], ...]) -> AEPClient:
    """One :class:`~.aep.AEPClient` per credential, sandbox and options (a token lives as long as it)."""
    return AEPClient(credentials, sandbox, **dict(options))
