"""Batch ingestion on the local platform (AEP's Batch Ingestion and Catalog roles): one batch, all or nothing."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from ..core.chunks import conform_chunk
from ..core.ledger import Ledger, error_text
from ..core.port import BatchRecord, DatasetSpec, SchemaMismatchError, utc_now
from ..core.sql import identifier
from .engines import Engine

logger = logging.getLogger(__name__)

STAGING_PREFIX = "_batch_"  # a replacing batch's staging table is _batch_<id>
_STAGING = re.compile(STAGING_PREFIX + "[0-9a-f]{32}")


class LocalIngestion:
    """Batches into the local platform's datasets, and the dataset registry."""

    def __init__(self, engine: Engine, ledger: Ledger, run_id: str) -> None:
        self.engine = engine
        self.ledger = ledger
        self.run_id = run_id

    def ingest(
        self,
        spec: DatasetSpec,
        chunks: Iterable[pa.Table | pd.DataFrame],
        replace: bool = False,
        retire: tuple[str, Sequence[str]] | None = None,
    ) -> BatchRecord:
        """Ingest every chunk into ``spec``'s dataset as one batch: all of it, or nothing and a failed batch.

        A batch appended to an existing dataset is one transaction that inserts the chunks straight
        into it (the engine keeps uncommitted rows within its memory limit). A replacing batch, or a
        dataset's first, fills a staging table ``_batch_<id>`` chunk by chunk, each committed so that
        memory stays flat however large the batch, then renames it over the dataset in one final
        transaction. Nothing is visible before the end; on failure the staging table is dropped.

        The batch is recorded ``loading`` with its run id and owner (host and process) and held live on
        its connection (:meth:`.Engine.hold_batch`) until it ends. Each batch first recovers the batches
        of owners that died mid-batch (a kill -9 or SIGTERM): they are marked failed and their staging
        tables dropped, while a live batch of another process is left alone.

        ``retire=(column, values)`` deletes the dataset's rows whose ``column`` is one of ``values`` in
        the same final transaction: the rows of earlier batches this one replaces (AEP's batch replay),
        so readers see the old rows or the new ones, never both.
        """
        if retire is not None and replace:
            raise ValueError("a replacing batch replaces every row: retire is for appended batches")
        batch_id, created = uuid.uuid4().hex, utc_now()
        staging = f"{STAGING_PREFIX}{batch_id}"
        recorded = False
        try:
            with self.engine.connect() as conn, self.engine.hold_batch(conn, batch_id):
                self.ledger.ensure(conn)
                self._recover(conn)
                self.ledger.start_batch(conn, batch_id, spec.name, created, self.run_id)
                self.engine.commit(conn)
                recorded = True
                appending = not replace and self._check_existing_columns(conn, spec)
                if not appending:
                    self._create_table(conn, staging, spec)
                    self.engine.commit(conn)
                rows, files = self._insert_chunks(conn, spec.name if appending else staging, spec, chunks, appending)
                self.ledger.register(conn, spec)
                if appending and retire is not None and retire[1]:
                    column, values = retire
                    self.ledger.execute(
                        conn,
                        f'DELETE FROM "{spec.name}" WHERE {identifier(column)} IN ({self.ledger.marks(len(values))})',
                        list(values),
                    )
                if not appending:
                    self.engine.replace_table(conn, staging, spec.name)
                self.ledger.update(
                    conn, "ledger_batches", batch_id, status="success", rows=rows, files=files, completed=utc_now()
                )
        except BaseException as exc:
            if recorded:
                self._record_failure(batch_id, staging, exc)
            raise
        logger.info("Batch %s: %s rows in %d chunks into %s", batch_id, f"{rows:,}", files, spec.name)
        return BatchRecord(batch_id, spec.name, "success", rows, files, created, utc_now(), run_id=self.run_id)

    def _record_failure(self, batch_id: str, staging: str, exc: BaseException) -> None:
        """Drop a failed batch's staging table and mark it failed; if even that fails (the database is
        gone), the batch stays ``loading`` until the next batch recovers it, and the original error wins."""
        try:
            with self.engine.connect() as conn:
                self.ledger.execute(conn, f'DROP TABLE IF EXISTS "{staging}"')
                self.ledger.update(
                    conn, "ledger_batches", batch_id, status="failed", completed=utc_now(), error=error_text(exc)
                )
        except Exception as cleanup:  # noqa: BLE001 - the batch's own error is the one to raise
            logger.warning(
                "Batch %s failed and could not be marked failed (%s); the next batch recovers it", batch_id, cleanup
            )

    def _recover(self, conn: Any) -> None:
        """Recover the batches whose owner is gone (a process killed mid-batch): mark each ``loading`` batch
        that no connection holds live as failed, and drop every staging table not of a live batch. A live
        batch of another process is never touched."""
        loading = dict(self.ledger.fetchall(conn, "SELECT id, owner FROM ledger_batches WHERE status = 'loading'"))
        staged = {
            name.removeprefix(STAGING_PREFIX) for name in self.engine.table_names(conn) if _STAGING.fullmatch(name)
        }
        for batch_id in sorted(loading.keys() | staged):
            if self.engine.batch_is_live(conn, batch_id):
                continue
            self.ledger.execute(conn, f'DROP TABLE IF EXISTS "{STAGING_PREFIX}{batch_id}"')
            if batch_id in loading:
                self.ledger.abandon_batch(conn, batch_id, loading[batch_id])
        self.engine.commit(conn)

    def _insert_chunks(
        self, conn: Any, table: str, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], one_transaction: bool
    ) -> tuple[int, int]:
        """Insert the conformed chunks into ``table``, committing after each unless ``one_transaction``;
        return the rows and chunks inserted."""
        rows = files = 0
        for files, chunk in enumerate(chunks, start=1):
            table_chunk = conform_chunk(chunk, spec, files, refuse_nul=not self.engine.stores_nul)
            self.engine.append(conn, table, table_chunk)
            if not one_transaction:
                self.engine.commit(conn)  # into the staging table: nothing is visible yet
            rows += table_chunk.num_rows
        return rows, files

    def _check_existing_columns(self, conn: Any, spec: DatasetSpec) -> bool:
        """Whether the dataset's table exists; raise if it exists with other columns than the spec's."""
        existing = self.engine.table_columns(conn, spec.name)
        if existing is None:
            return False
        have = [(name, sql_type.upper()) for name, sql_type in existing]
        wanted = [(c.name, self.engine.sql_type(c)) for c in spec.columns]
        if have != wanted:
            raise SchemaMismatchError(
                f"dataset {spec.name!r} exists with columns {have}, but the batch declares {wanted}; "
                "re-create it with a replacing batch"
            )
        return True

    def _create_table(self, conn: Any, table: str, spec: DatasetSpec) -> None:
        """Create an empty table with the spec's columns."""
        ddl = ", ".join(f'"{c.name}" {self.engine.sql_type(c)}' for c in spec.columns)
        self.ledger.execute(conn, f'CREATE TABLE "{table}" ({ddl})')
