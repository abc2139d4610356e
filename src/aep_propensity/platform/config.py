"""The platform's configuration: one validated model per backend, and the platform it builds.

The catalog's ``platform`` block (``conf/<env>/globals.yml``) names a backend and its options;
:func:`make_platform` validates it against that backend's model (an unknown backend or key is an
error naming it) and builds the platform, importing the backend's code only then: a run on DuckDB
never imports the aep backend. Secrets never sit in these models; they come from the catalog's
``credentials`` (environment variables), which each backend reads when it builds.

A new backend is one config model here (with its ``build``) plus the backend's own package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, TypeAdapter, ValidationError

from .core.port import INTERACTIVE_ROW_LIMIT, Platform


class _BackendConfig(BaseModel):
    """What every backend's configuration shares: frozen, and no key it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    interactive_row_limit: PositiveInt = INTERACTIVE_ROW_LIMIT


class DuckDBConfig(_BackendConfig):
    """The embedded default: a DuckDB database file (no server, no credentials)."""

    backend: Literal["duckdb"]
    path: str
    memory_limit: str = "4GB"
    threads: PositiveInt = 2
    lock_timeout_seconds: PositiveFloat = 60.0
    export_rows_per_file: PositiveInt = 1_000_000

    def build(self, credentials: Mapping[str, Any]) -> Platform:
        """The local platform on this DuckDB file."""
        from .local import DuckDBEngine, LocalPlatform

        engine = DuckDBEngine(
            self.path,
            memory_limit=self.memory_limit,
            threads=self.threads,
            lock_timeout_seconds=self.lock_timeout_seconds,
        )
        return LocalPlatform(engine, self.export_rows_per_file, self.interactive_row_limit)


class PostgresConfig(_BackendConfig):
    """The local platform on PostgreSQL (the stand-in for Query Service); its DSN is a credential."""

    backend: Literal["postgres"]
    db_schema: str = Field("aep_propensity", alias="schema")
    export_rows_per_file: PositiveInt = 1_000_000

    def build(self, credentials: Mapping[str, Any]) -> Platform:
        """The local platform on the PostgreSQL server of ``credentials["dsn"]``."""
        from .local import LocalPlatform, PostgresEngine

        dsn = credentials.get("dsn")
        if not dsn:
            raise ValueError(
                "the postgres platform needs credentials with a 'dsn': set AEP_PROPENSITY_PG_DSN "
                "(see conf/postgres/credentials.yml)"
            )
        engine = PostgresEngine(str(dsn), schema=self.db_schema)
        return LocalPlatform(engine, self.export_rows_per_file, self.interactive_row_limit)


class AEPConfig(_BackendConfig):
    """Adobe Experience Platform (or the local AEP emulator) through its REST APIs and Query Service.

    ``sandbox``, ``tenant``, ``base_url`` and ``ims_url`` may come from the credentials (environment
    variables), which then take precedence; the OAuth credential always does. The guardrail options
    (``files_per_batch`` to ``max_audiences``) default to AEP's documented guardrails (see
    :mod:`.aep.ingestion` and :mod:`.aep.destinations`).
    """

    backend: Literal["aep"]
    sandbox: str | None = None
    tenant: str | None = None
    base_url: str = "https://platform.adobe.io"
    ims_url: str = "https://ims-na1.adobelogin.com"
    query_dialect: Literal["spark", "postgres"] = "spark"
    flatten_paths: bool = False
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "require"
    timeout_seconds: PositiveFloat = 60.0
    retries: int = Field(5, ge=0)
    backoff_factor: float = Field(0.5, ge=0)
    poll_interval_seconds: PositiveFloat = 5.0
    poll_timeout_seconds: PositiveFloat = 3600.0
    max_retry_after_seconds: PositiveFloat = 120.0
    upload_file_bytes: PositiveInt = Field(256 * 1024 * 1024, le=256 * 1024 * 1024)  # AEP's largest PUT
    files_per_batch: PositiveInt = 25_000
    batch_bytes: PositiveInt = 10**12  # 1 TB
    profile_batches_per_day: PositiveInt = 90
    max_attributes: PositiveInt = 50
    max_audiences: PositiveInt = 250

    def build(self, credentials: Mapping[str, Any]) -> Platform:
        """The aep backend with an OAuth client for ``credentials`` and the sandbox."""
        from .aep import AEPClient, AEPPlatform, Credentials

        merged = self.model_copy(
            update={
                key: credentials[key] for key in ("sandbox", "tenant", "base_url", "ims_url") if credentials.get(key)
            }
        )
        if not merged.sandbox:
            raise ValueError("the aep platform needs a sandbox: set AEP_SANDBOX (or platform.sandbox)")
        client = AEPClient(
            Credentials.from_config(credentials),
            merged.sandbox.lower(),
            base_url=merged.base_url,
            ims_url=merged.ims_url,
            timeout_seconds=merged.timeout_seconds,
            retries=merged.retries,
            backoff_factor=merged.backoff_factor,
            poll_interval_seconds=merged.poll_interval_seconds,
            poll_timeout_seconds=merged.poll_timeout_seconds,
            max_retry_after_seconds=merged.max_retry_after_seconds,
        )
        return AEPPlatform(
            client,
            tenant=merged.tenant or None,
            query_dialect=merged.query_dialect,
            flatten_paths=merged.flatten_paths,
            sslmode=merged.sslmode,
            interactive_row_limit=merged.interactive_row_limit,
            upload_file_bytes=merged.upload_file_bytes,
            files_per_batch=merged.files_per_batch,
            batch_bytes=merged.batch_bytes,
            profile_batches_per_day=merged.profile_batches_per_day,
            max_attributes=merged.max_attributes,
            max_audiences=merged.max_audiences,
        )


class SparkConfig(_BackendConfig):
    """The platform on Apache Spark: local mode by default, Spark Connect or Databricks Connect when configured.

    ``path`` is the data root of the platform's tables (Parquet) and ``ledger`` its ledger (an SQLite
    file; by default ``<path>/ledger.sqlite``): both survive the process, and readers read while a
    run writes. ``session`` chooses where Spark runs: ``local`` (``master``, ``local[2]`` by
    default), ``connect`` (a Spark Connect server at ``remote``, ``sc://host:port``; the
    credentials' ``remote``, from ``SPARK_REMOTE``, takes precedence) or ``databricks`` (Databricks
    Connect, configured by its own environment variables or profile). A remote session that cannot
    be had stops the run; it never falls back to local mode.
    """

    backend: Literal["spark"]
    path: str
    ledger: str | None = None
    session: Literal["local", "connect", "databricks"] = "local"
    master: str = "local[2]"
    remote: str | None = None
    driver_memory: str = "2g"
    shuffle_partitions: PositiveInt = 8
    spark_conf: dict[str, str] = {}
    export_rows_per_file: PositiveInt = 1_000_000

    def build(self, credentials: Mapping[str, Any]) -> Platform:
        """The spark backend; its session starts on first use, not here."""
        from .spark import SparkPlatform

        remote = credentials.get("remote") or self.remote
        return SparkPlatform(self.model_copy(update={"remote": remote or None}))


PlatformConfig = Annotated[DuckDBConfig | PostgresConfig | AEPConfig | SparkConfig, Field(discriminator="backend")]
_CONFIG = TypeAdapter(PlatformConfig)
_BACKENDS = ("duckdb", "postgres", "aep", "spark")


def parse_platform_config(config: Mapping[str, Any]) -> DuckDBConfig | PostgresConfig | AEPConfig | SparkConfig:
    """Validate the catalog's ``platform`` block; the error names each bad or unknown key."""
    try:
        return _CONFIG.validate_python(dict(config))
    except ValidationError as exc:
        problems = "; ".join(f"{_key_of(error['loc'])}: {error['msg']}" for error in exc.errors())
        raise ValueError(f"invalid platform configuration: {problems}") from None


def _key_of(location: tuple[str | int, ...]) -> str:
    """The configuration key a validation error is about (pydantic puts the backend tag first)."""
    parts = location[1:] if location and location[0] in _BACKENDS else location
    return "platform." + ".".join(str(part) for part in parts) if parts else "platform.backend"


def make_platform(config: Mapping[str, Any], credentials: Mapping[str, Any] | None = None) -> Platform:
    """Build the platform that the catalog's ``platform`` block names (nothing connects here)."""
    return parse_platform_config(config).build(credentials or {})
