"""Batch ingestion on the spark backend: one batch, all or nothing, recovered when its writer dies.

A batch writes its rows into a new folder of the dataset (``tables/<dataset>/b-<batch id>``) and
becomes visible in one SQLite transaction that names the folder among the dataset's parts (after
the existing ones when it appends, alone when it replaces) and records the batch a success.
Before that commit no reader can see a row of it; a driver killed mid-batch leaves a folder that
no ledger row names and a batch ``loading`` that nobody holds live, and the next batch of any
process marks the batch failed and deletes the folder.

Chunks that the driver makes (generation) are conformed to the dataset's schema and written as
Parquet files with pyarrow. Chunks that are a transform of Parquet files (scoring: the model over
an export, :class:`.ParquetMap`) run where the data is instead: Spark reads the files and applies
the transform on its executors (``mapInArrow``; the transform, model included, is pickled once per
job on the driver, and PySpark broadcasts the pickle when it passes 1 MB), so the rows never pass through the driver.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import types as T

from ..core.chunks import conform_chunk
from ..core.ledger import Ledger, error_text
from ..core.port import BatchRecord, DatasetSpec, ParquetMap, SchemaMismatchError, utc_now
from .tables import SparkTables, spark_schema, utc_arrow

logger = logging.getLogger(__name__)


class SparkIngestion:
    """Batches into the spark backend's datasets, and their recovery."""

    def __init__(self, tables: SparkTables, ledger: Ledger, run_id: str) -> None:
        self.tables = tables
        self.store = tables.store
        self.ledger = ledger
        self.run_id = run_id

    def ingest(
        self, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], replace: bool = False
    ) -> BatchRecord:
        """Ingest every chunk into ``spec``'s dataset as one batch (see the module's docstring)."""
        batch_id, created = uuid.uuid4().hex, utc_now()
        part = self.store.new_part(spec.name, "b", batch_id)
        schema = spark_schema(spec).json()
        with self.store.hold(batch_id):
            with self.ledger.engine.connect() as conn:
                self.store.ensure(conn)
                self.recover(conn)
                self._check_existing_columns(conn, spec, schema, replace)
                self.ledger.start_batch(conn, batch_id, spec.name, created, self.run_id)
            try:
                source = getattr(chunks, "parquet_source", lambda: None)()
                rows, files = self._map(source, spec, part) if source else self._write(chunks, spec, part)
                with self.ledger.engine.connect() as conn:
                    entry = self.store.entry(conn, spec.name)
                    before, total = (entry[2], entry[3] or 0) if entry and not replace else ([], 0)
                    self.store.commit_table(conn, spec.name, schema, [*before, *([part] if rows else [])], total + rows)
                    self.ledger.register(conn, spec)
                    self.ledger.update(
                        conn, "ledger_batches", batch_id, status="success", rows=rows, files=files, completed=utc_now()
                    )
            except BaseException as exc:
                self._record_failure(batch_id, part, exc)
                raise
        logger.info("Batch %s: %s rows in %d chunks into %s", batch_id, f"{rows:,}", files, spec.name)
        return BatchRecord(batch_id, spec.name, "success", rows, files, created, utc_now(), run_id=self.run_id)

    def _write(self, chunks: Iterable[pa.Table | pd.DataFrame], spec: DatasetSpec, part: str) -> tuple[int, int]:
        """Write the driver's chunks, conformed, as ``part-<n>.parquet`` files of the batch's folder."""
        fs, folder = self.store.fs, f"{self.store.root}/{part}"
        fs.makedirs(folder, exist_ok=True)
        rows = files = 0
        for files, chunk in enumerate(chunks, start=1):
            table = conform_chunk(chunk, spec, files, refuse_nul=False)
            if table.num_rows:
                with fs.open(f"{folder}/part-{files}.parquet", "wb") as handle:
                    pq.write_table(utc_arrow(table, spec), handle)
            rows += table.num_rows
        return rows, files

    def _map(self, source: ParquetMap, spec: DatasetSpec, part: str) -> tuple[int, int]:
        """Apply ``source``'s transform to its files on the executors, conformed, into the batch's folder."""
        frame = self.tables.session.read.parquet(source.url)
        mapped = frame.mapInArrow(_conforming(source.transform, spec), spark_schema(spec))
        rows = self.tables.write(mapped, part)
        files = len(self.store.fs.glob(f"{self.store.root}/{part}/*.parquet"))
        return rows, files

    def recover(self, conn: Any) -> None:
        """Recover what writers that died left: ``loading`` batches nobody holds live are marked failed, and
        folders that no table names and nobody writes are deleted. A live batch of another process is left."""
        loading = self.ledger.fetchall(conn, "SELECT id, owner FROM ledger_batches WHERE status = 'loading'")
        for batch_id, owner in loading:
            if self.store.is_live(batch_id):
                continue
            self.ledger.abandon_batch(conn, batch_id, owner)
        for part in self.store.collect(conn):
            logger.info("Deleted %s: no table names it and its writer is gone", part)

    def _record_failure(self, batch_id: str, part: str, exc: BaseException) -> None:
        """Delete a failed batch's folder and mark it failed; if that fails too, the next batch recovers it."""
        try:
            if self.store.fs.exists(f"{self.store.root}/{part}"):
                self.store.fs.rm(f"{self.store.root}/{part}", recursive=True)
            with self.ledger.engine.connect() as conn:
                self.ledger.update(
                    conn, "ledger_batches", batch_id, status="failed", completed=utc_now(), error=error_text(exc)
                )
        except Exception as cleanup:  # noqa: BLE001 - the batch's own error is the one to raise
            logger.warning(
                "Batch %s failed and could not be marked failed (%s); the next batch recovers it", batch_id, cleanup
            )

    def _check_existing_columns(self, conn: Any, spec: DatasetSpec, schema: str, replace: bool) -> None:
        """Raise when appending to a dataset whose recorded columns are not the spec's."""
        entry = self.store.entry(conn, spec.name)
        if replace or entry is None or entry[1] == schema:
            return
        raise SchemaMismatchError(
            f"dataset {spec.name!r} exists with columns {_columns(entry[1])}, but the batch declares "
            f"{_columns(schema)}; re-create it with a replacing batch"
        )


def _columns(schema: str | None) -> list[tuple[str, str]]:
    """``[(column, Spark type)]`` of a recorded Spark schema (JSON), for messages."""
    struct = T.StructType.fromJson(json.loads(schema or '{"type": "struct", "fields": []}'))
    return [(field.name, field.dataType.simpleString()) for field in struct.fields]


def _conforming(
    transform: Callable[[pa.RecordBatch], pa.Table], spec: DatasetSpec
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function ``mapInArrow`` runs on each partition: ``transform`` on each batch, conformed to ``spec``."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for index, batch in enumerate(batches, start=1):
            yield from utc_arrow(conform_chunk(transform(batch), spec, index, refuse_nul=False), spec).to_batches()

    return run
