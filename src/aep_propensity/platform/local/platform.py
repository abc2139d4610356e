"""The local platform: the Platform port on a local SQL engine, a facade over one component per service.

Queries and tables (AEP's Query Service role) are here; ingestion, exports, segmentation and
activation are components that share the engine and the ledger (``ledger_*`` tables in the same
database), so later runs and notebooks read what really happened.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import pandas as pd
import pyarrow as pa

from ..core.ledger import Ledger, error_text
from ..core.port import (
    INTERACTIVE_ROW_LIMIT,
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
from .activation import LocalActivation
from .engines import Engine, stream_rows
from .exports import LocalExports
from .ingestion import LocalIngestion
from .segmentation import LocalSegmentation

logger = logging.getLogger(__name__)


class LocalPlatform:
    """The Platform port on a local SQL engine (DuckDB or PostgreSQL)."""

    def __init__(
        self, engine: Engine, export_rows_per_file: int = 1_000_000, interactive_row_limit: int = INTERACTIVE_ROW_LIMIT
    ) -> None:
        self.engine = engine
        self.interactive_row_limit = interactive_row_limit
        self.ledger = Ledger(engine)
        self.run_id = uuid.uuid4().hex  # this platform session's: it tags the batches it makes
        self.ingestion = LocalIngestion(engine, self.ledger, self.run_id)
        self.exports = LocalExports(engine, self.ledger, export_rows_per_file)
        self.segmentation = LocalSegmentation(engine, self.ledger)
        self.activation = LocalActivation(engine, self.ledger)

    def __repr__(self) -> str:
        return f"LocalPlatform({self.engine!r})"

    @property
    def dialect(self) -> str:
        """The sqlglot dialect the engine speaks."""
        return self.engine.dialect

    # -- queries and tables ---------------------------------------------------------------------

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query; more than the interactive row limit is an error, as on AEP."""
        limit = self.interactive_row_limit
        with self.engine.connect(read_only=True) as conn:
            table = self.engine.fetch_arrow(conn, transpile(sql, self.dialect), limit + 1)
        if table.num_rows > limit:
            raise PlatformError(f"interactive query returned more than {limit:,} rows; read bulk data through export")
        return table.to_pandas()

    def create_table_as(self, name: str, sql: str) -> TableHandle:
        """Materialise ``sql`` as table ``name`` in one transaction (the old table stays until commit)."""
        check_name(name)
        job_id, started = uuid.uuid4().hex, utc_now()
        try:
            with self.engine.connect() as conn:
                self.ledger.ensure(conn)
                self.ledger.execute(conn, f'DROP TABLE IF EXISTS "{name}"')
                self.ledger.execute(conn, f'CREATE TABLE "{name}" AS {transpile(sql, self.dialect)}')
                rows = self.ledger.count(conn, name)
                self.ledger.record_query(conn, job_id, name, started, rows)
        except Exception as exc:
            self._record_failed_query(job_id, name, started, exc)
            raise PlatformError(f"creating table {name!r} failed: {exc}") from exc
        logger.info("Created table %s with %s rows", name, f"{rows:,}")
        return self.handle(name)

    def create_view(self, name: str, sql: str) -> TableHandle:
        """Define ``name`` as a view of ``sql`` (replacing an earlier view of that name)."""
        check_name(name)
        with self.engine.connect() as conn:
            self.ledger.execute(conn, f'DROP VIEW IF EXISTS "{name}"')
            self.ledger.execute(conn, f'CREATE VIEW "{name}" AS {transpile(sql, self.dialect)}')
        logger.info("Defined view %s", name)
        return self.handle(name)

    def _record_failed_query(self, job_id: str, name: str, started: datetime, exc: BaseException) -> None:
        """Record a failed query job in the ledger."""
        with self.engine.connect() as conn:
            self.ledger.ensure(conn)
            self.ledger.record_query(conn, job_id, name, started, None, error_text(exc))

    def handle(self, table: str) -> TableHandle:
        """A handle (name, columns, row count) on an existing table."""
        check_name(table)
        with self.engine.connect(read_only=True) as conn:
            columns = self.engine.table_columns(conn, table)
            if columns is None:
                raise PlatformError(
                    f"table {table!r} does not exist on the platform: run the pipeline that makes it first"
                )
            return TableHandle(table, tuple(name for name, _ in columns), self.ledger.count(conn, table))

    def exists(self, table: str) -> bool:
        """Whether ``table`` exists."""
        check_name(table)
        with self.engine.connect(read_only=True) as conn:
            return self.engine.table_columns(conn, table) is not None

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a canonical-dialect query as record batches."""
        return stream_rows(self.engine, sql, batch_rows)

    # -- the other services, by component -------------------------------------------------------

    def ingest(
        self,
        spec: DatasetSpec,
        chunks: Iterable[pa.Table | pd.DataFrame],
        replace: bool = False,
        retire: tuple[str, Sequence[str]] | None = None,
    ) -> BatchRecord:
        """Ingest every chunk as one batch (see :meth:`.LocalIngestion.ingest`)."""
        return self.ingestion.ingest(spec, chunks, replace, retire)

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The ledger's batches, newest first, optionally for one dataset."""
        return self.ledger.batches(dataset)

    def datasets(self) -> pd.DataFrame:
        """The dataset registry: name, columns and types, identity column, profile flag."""
        return self.ledger.datasets()

    def export(self, table: str, location: str, compression: str = "snappy") -> ExportRecord:
        """Export ``table`` in the Data Landing Zone layout (see :meth:`.LocalExports.export`)."""
        return self.exports.export(table, location, compression)

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, or update it when its rule, description or source changed."""
        return self.segmentation.upsert_audience(definition, source)

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Evaluate the audience now into ``audience_membership``."""
        return self.segmentation.evaluate_audience(audience_id)

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The audience jobs, newest first; by default only each audience's latest successful one."""
        return self.ledger.audience_jobs(latest_only)

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver evaluated audiences to ``destination`` (see :meth:`.LocalActivation.activate`)."""
        return self.activation.activate(job_ids, destination, attributes, force)

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The ledger's deliveries, newest first, optionally to one destination."""
        return self.ledger.deliveries(destination)
