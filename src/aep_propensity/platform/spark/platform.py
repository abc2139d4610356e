"""The spark backend: the Platform port on Apache Spark, a facade over one component per service.

Queries and tables (AEP's Query Service role) are here: canonical SQL transpiled to Spark SQL and
run by the session over the ledger's tables (:mod:`.tables`); ingestion, exports and audiences are
components sharing the session and the ledger (an SQLite file beside the tables, :mod:`.store`).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa

from ..core.ledger import Ledger, error_text
from ..core.port import (
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    BatchRecord,
    DatasetSpec,
    Delivery,
    Destination,
    ExportRecord,
    PlatformError,
    ProfileSource,
    TableHandle,
    check_name,
    utc_now,
)
from ..core.sql import transpile
from .audiences import SparkAudiences
from .exports import SparkExports
from .ingestion import SparkIngestion
from .settings import SparkSettings
from .store import SQLiteStore, TableStore
from .tables import SparkTables, naive_arrow

logger = logging.getLogger(__name__)


def ledger_path(config: SparkSettings) -> str:
    """Where the ledger's SQLite file is: ``config.ledger``, else ``ledger.sqlite`` under a local data root."""
    if config.ledger:
        return os.path.abspath(config.ledger)
    protocol = fsspec.core.split_protocol(config.path)[0]
    if protocol not in (None, "file", "local"):
        raise ValueError(
            f"the spark platform's data root {config.path!r} is remote: set platform.ledger to a local path "
            "for its ledger (an SQLite file where the run's driver process writes)"
        )
    return os.path.join(os.path.abspath(fsspec.core.strip_protocol(config.path)), "ledger.sqlite")


class SparkPlatform:
    """The Platform port on Apache Spark (local mode, Spark Connect or Databricks Connect)."""

    def __init__(self, config: SparkSettings) -> None:
        self.config = config
        self.interactive_row_limit = config.interactive_row_limit
        ledger_file = ledger_path(config)
        self.ledger = Ledger(SQLiteStore(ledger_file))
        root = config.path if "://" in config.path else os.path.abspath(config.path)
        store = TableStore(root, self.ledger, locks=os.path.join(os.path.dirname(ledger_file), "_locks"))
        self.tables = SparkTables(config, store)
        self.run_id = uuid.uuid4().hex  # this platform session's: it tags the batches it makes
        self.ingestion = SparkIngestion(self.tables, self.ledger, self.run_id)
        self.exports = SparkExports(self.tables, self.ledger, config.export_rows_per_file)
        self.audiences = SparkAudiences(self.tables, self.ledger)

    def __repr__(self) -> str:
        return f"SparkPlatform({self.config.path!r}, session={self.config.session!r})"

    dialect = "spark"

    # -- queries and tables ---------------------------------------------------------------------

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query; more than the interactive row limit is an error, as on AEP."""
        limit = self.interactive_row_limit
        table = naive_arrow(self.tables.sql(sql).limit(limit + 1).toArrow())
        if table.num_rows > limit:
            raise PlatformError(f"interactive query returned more than {limit:,} rows; read bulk data through export")
        return table.to_pandas()

    def create_table_as(self, name: str, sql: str) -> TableHandle:
        """Materialise ``sql`` as table ``name``: Spark writes a new folder, and one ledger commit makes it the
        table (the old folder stays readable until then)."""
        check_name(name)
        job_id, started = uuid.uuid4().hex, utc_now()
        part = self.tables.store.new_part(name, "q", job_id)
        try:
            with self.tables.store.hold(job_id):
                frame = self.tables.sql(sql)
                rows = self.tables.write(frame, part)
                with self.ledger.engine.connect() as conn:
                    self.tables.store.ensure(conn)
                    self.tables.store.commit_table(conn, name, frame.schema.json(), [part], rows)
                    self.ledger.record_query(conn, job_id, name, started, rows)
        except Exception as exc:
            self._record_failed_query(job_id, name, part, started, exc)
            raise PlatformError(f"creating table {name!r} failed: {exc}") from exc
        logger.info("Created table %s with %s rows", name, f"{rows:,}")
        return self.handle(name)

    def _record_failed_query(self, job_id: str, name: str, part: str, started: datetime, exc: BaseException) -> None:
        """Delete a failed CTAS's folder and record the failed query job."""
        folder = f"{self.tables.store.root}/{part}"
        if self.tables.store.fs.exists(folder):
            self.tables.store.fs.rm(folder, recursive=True)
        with self.ledger.engine.connect() as conn:
            self.tables.store.ensure(conn)
            self.ledger.record_query(conn, job_id, name, started, None, error_text(exc))

    def create_view(self, name: str, sql: str) -> TableHandle:
        """Define ``name`` as a view of ``sql`` (checked by Spark's analyser before it is recorded)."""
        check_name(name)
        self.tables.sql(sql).schema  # noqa: B018 - analysing the query is the check
        with self.ledger.engine.connect() as conn:
            self.tables.store.ensure(conn)
            self.tables.store.commit_view(conn, name, transpile(sql, "spark"))
        logger.info("Defined view %s", name)
        return self.handle(name)

    def handle(self, table: str) -> TableHandle:
        """A handle (name, columns, row count) on an existing table or view."""
        check_name(table)
        with self.ledger.engine.connect(read_only=True) as conn:
            entry = self.tables.store.entry(conn, table) if self._has_registry(conn) else None
        if entry is None:
            raise PlatformError(f"table {table!r} does not exist on the platform: run the pipeline that makes it first")
        kind, schema, parts, rows = entry
        frame = self.tables.frame(schema, parts) if kind == "table" else self.tables.sql(f'SELECT * FROM "{table}"')
        count = rows if kind == "table" and rows is not None else frame.count()
        return TableHandle(table, tuple(frame.columns), int(count))

    def exists(self, table: str) -> bool:
        """Whether ``table`` exists."""
        check_name(table)
        with self.ledger.engine.connect(read_only=True) as conn:
            return self._has_registry(conn) and self.tables.store.entry(conn, table) is not None

    def _has_registry(self, conn: Any) -> bool:
        """Whether the ledger has its table registry yet (a fresh data root has none)."""
        return self.ledger.engine.table_columns(conn, "ledger_tables") is not None

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a canonical-dialect query as record batches (bounded memory)."""
        return self.tables.stream(self.tables.sql(sql), batch_rows)

    # -- the other services, by component -------------------------------------------------------

    def ingest(
        self, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], replace: bool = False
    ) -> BatchRecord:
        """Ingest every chunk as one batch (see :meth:`.SparkIngestion.ingest`)."""
        return self.ingestion.ingest(spec, chunks, replace)

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The ledger's batches, newest first, optionally for one dataset."""
        return self.ledger.batches(dataset)

    def datasets(self) -> pd.DataFrame:
        """The dataset registry: name, columns and types, identity column, profile flag."""
        return self.ledger.datasets()

    def export(self, table: str, location: str, compression: str = "snappy") -> ExportRecord:
        """Export ``table`` in the Data Landing Zone layout (see :meth:`.SparkExports.export`)."""
        return self.exports.export(table, location, compression)

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, or update it when its rule, description or source changed."""
        return self.audiences.upsert_audience(definition, source)

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Evaluate the audience now into ``audience_membership``."""
        return self.audiences.evaluate_audience(audience_id)

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The audience jobs, newest first; by default only each audience's latest successful one."""
        return self.ledger.audience_jobs(latest_only)

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver evaluated audiences to ``destination`` (see :meth:`.SparkAudiences.activate`)."""
        return self.audiences.activate(job_ids, destination, attributes, force)

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The ledger's deliveries, newest first, optionally to one destination."""
        return self.ledger.deliveries(destination)
