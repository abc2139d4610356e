"""The local platform: the Platform port on an embedded DuckDB file or on PostgreSQL.

Its ledger lives in the same database, in ``ledger_*`` tables, so later runs and notebooks read
what really happened: the dataset registry, batches, exports and query jobs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .engines import Engine
from .local_audiences import LocalAudiences
from .port import (
    INTERACTIVE_ROW_LIMIT,
    BatchRecord,
    DatasetSpec,
    ExportRecord,
    PlatformError,
    SchemaMismatchError,
    TableHandle,
    check_name,
    utc_now,
)
from .sql import identifier, transpile

logger = logging.getLogger(__name__)

_LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS ledger_datasets (name TEXT PRIMARY KEY, columns TEXT NOT NULL, "
    "identity TEXT, profile_enabled BOOLEAN NOT NULL, updated TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_batches (id TEXT PRIMARY KEY, dataset TEXT NOT NULL, "
    "status TEXT NOT NULL, rows BIGINT NOT NULL, files BIGINT NOT NULL, created TIMESTAMP NOT NULL, "
    "completed TIMESTAMP, error TEXT)",
    "CREATE TABLE IF NOT EXISTS ledger_exports (id TEXT PRIMARY KEY, table_name TEXT NOT NULL, "
    "path TEXT NOT NULL, export_time TEXT NOT NULL, rows BIGINT NOT NULL, files BIGINT NOT NULL, "
    "bytes BIGINT NOT NULL, created TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_queries (id TEXT PRIMARY KEY, table_name TEXT NOT NULL, "
    "status TEXT NOT NULL, rows BIGINT, started TIMESTAMP NOT NULL, completed TIMESTAMP, error TEXT)",
)
PARQUET_COMPRESSIONS = frozenset({"snappy", "zstd", "gzip", "uncompressed"})
_BATCH_COLUMNS = "id, dataset, status, rows, files, created, completed, error"


def _error_text(exc: BaseException) -> str:
    """A one-line description of an error for the ledger."""
    return f"{type(exc).__name__}: {exc}"[:2000]


class LocalPlatform(LocalAudiences):
    """The Platform port on a local SQL engine."""

    def __init__(
        self, engine: Engine, export_rows_per_file: int = 1_000_000, interactive_row_limit: int = INTERACTIVE_ROW_LIMIT
    ) -> None:
        self.engine = engine
        self.export_rows_per_file = export_rows_per_file
        self.interactive_row_limit = interactive_row_limit

    def __repr__(self) -> str:
        return f"LocalPlatform({self.engine!r})"

    @property
    def dialect(self) -> str:
        """The sqlglot dialect the engine speaks."""
        return self.engine.dialect

    # -- queries ------------------------------------------------------------------------------

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
                self._ensure_ledger(conn)
                self._execute(conn, f'DROP TABLE IF EXISTS "{name}"')
                self._execute(conn, f'CREATE TABLE "{name}" AS {transpile(sql, self.dialect)}')
                rows = self._count(conn, name)
                self._execute(
                    conn,
                    f"INSERT INTO ledger_queries VALUES ({self._marks(7)})",
                    [job_id, name, "success", rows, started, utc_now(), None],
                )
        except Exception as exc:
            self._record_failed_query(job_id, name, started, exc)
            raise PlatformError(f"creating table {name!r} failed: {exc}") from exc
        logger.info("Created table %s with %s rows", name, f"{rows:,}")
        return self.handle(name)

    def create_view(self, name: str, sql: str) -> TableHandle:
        """Define ``name`` as a view of ``sql`` (replacing an earlier view of that name)."""
        check_name(name)
        with self.engine.connect() as conn:
            self._execute(conn, f'DROP VIEW IF EXISTS "{name}"')
            self._execute(conn, f'CREATE VIEW "{name}" AS {transpile(sql, self.dialect)}')
        logger.info("Defined view %s", name)
        return self.handle(name)

    def _record_failed_query(self, job_id: str, name: str, started: datetime, exc: BaseException) -> None:
        """Record a failed query job in the ledger."""
        with self.engine.connect() as conn:
            self._ensure_ledger(conn)
            self._execute(
                conn,
                f"INSERT INTO ledger_queries VALUES ({self._marks(7)})",
                [job_id, name, "failed", None, started, utc_now(), _error_text(exc)],
            )

    def handle(self, table: str) -> TableHandle:
        """A handle (name, columns, row count) on an existing table."""
        check_name(table)
        with self.engine.connect(read_only=True) as conn:
            columns = self.engine.table_columns(conn, table)
            if columns is None:
                raise PlatformError(
                    f"table {table!r} does not exist on the platform: run the pipeline that makes it first"
                )
            return TableHandle(table, tuple(name for name, _ in columns), self._count(conn, table))

    def exists(self, table: str) -> bool:
        """Whether ``table`` exists."""
        check_name(table)
        with self.engine.connect(read_only=True) as conn:
            return self.engine.table_columns(conn, table) is not None

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a canonical-dialect query as record batches."""
        with self.engine.connect(read_only=True) as conn:
            yield from self.engine.stream(conn, transpile(sql, self.dialect), batch_rows)

    # -- ingestion ------------------------------------------------------------------------------

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

        ``retire=(column, values)`` deletes the dataset's rows whose ``column`` is one of ``values`` in
        the same final transaction: the rows of earlier batches this one replaces (AEP's batch replay),
        so readers see the old rows or the new ones, never both.
        """
        if retire is not None and replace:
            raise ValueError("a replacing batch replaces every row: retire is for appended batches")
        batch_id, created = uuid.uuid4().hex, utc_now()
        staging = f"_batch_{batch_id}"
        with self.engine.connect() as conn:
            self._ensure_ledger(conn)
            self._execute(
                conn,
                f"INSERT INTO ledger_batches ({_BATCH_COLUMNS}) VALUES ({self._marks(8)})",
                [batch_id, spec.name, "loading", 0, 0, created, None, None],
            )
        try:
            with self.engine.connect() as conn:
                appending = not replace and self._check_existing_columns(conn, spec)
                if not appending:
                    self._create_table(conn, staging, spec)
                    self.engine.commit(conn)
                rows, files = self._insert_chunks(conn, spec.name if appending else staging, spec, chunks, appending)
                self._register(conn, spec)
                if appending and retire is not None and retire[1]:
                    column, values = retire
                    self._execute(
                        conn,
                        f'DELETE FROM "{spec.name}" WHERE {identifier(column)} IN ({self._marks(len(values))})',
                        list(values),
                    )
                if not appending:
                    self._execute(conn, f'DROP TABLE IF EXISTS "{spec.name}"')
                    self._execute(conn, f'ALTER TABLE "{staging}" RENAME TO "{spec.name}"')
                self._update_ledger(
                    conn, "ledger_batches", batch_id, status="success", rows=rows, files=files, completed=utc_now()
                )
        except BaseException as exc:
            with self.engine.connect() as conn:
                self._execute(conn, f'DROP TABLE IF EXISTS "{staging}"')
                self._update_ledger(
                    conn, "ledger_batches", batch_id, status="failed", completed=utc_now(), error=_error_text(exc)
                )
            raise
        logger.info("Batch %s: %s rows in %d chunks into %s", batch_id, f"{rows:,}", files, spec.name)
        return BatchRecord(batch_id, spec.name, "success", rows, files, created, utc_now())

    def _insert_chunks(
        self, conn: Any, table: str, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], one_transaction: bool
    ) -> tuple[int, int]:
        """Insert the conformed chunks into ``table``, committing after each unless ``one_transaction``;
        return the rows and chunks inserted."""
        rows = files = 0
        for files, chunk in enumerate(chunks, start=1):
            table_chunk = conform_chunk(chunk, spec, files)
            self.engine.append(conn, table, table_chunk)
            if not one_transaction:
                self.engine.commit(conn)  # into the staging table: nothing is visible yet
            rows += table_chunk.num_rows
        return rows, files

    def _update_ledger(self, conn: Any, table: str, row_id: str, **fields: Any) -> None:
        """Set fields (names from this package, values bound) of one row of a ledger table."""
        assignments = ", ".join(f"{name} = {self.engine.placeholder}" for name in fields)
        self._execute(
            conn, f"UPDATE {table} SET {assignments} WHERE id = {self.engine.placeholder}", [*fields.values(), row_id]
        )

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The ledger's batches, newest first, optionally for one dataset."""
        sql = f"SELECT {_BATCH_COLUMNS} FROM ledger_batches"
        params: list[Any] = []
        if dataset is not None:
            sql += f" WHERE dataset = {self.engine.placeholder}"
            params.append(dataset)
        rows = self._read_ledger("ledger_batches", sql + " ORDER BY created DESC", params)
        return [BatchRecord(*row) for row in rows]

    def datasets(self) -> pd.DataFrame:
        """The dataset registry: name, columns and types, identity column, profile flag."""
        rows = self._read_ledger(
            "ledger_datasets",
            "SELECT name, columns, identity, profile_enabled, updated FROM ledger_datasets ORDER BY name",
        )
        frame = pd.DataFrame(rows, columns=["name", "columns", "identity", "profile_enabled", "updated"])
        frame["columns"] = frame["columns"].map(json.loads)
        return frame

    # -- export ---------------------------------------------------------------------------------

    def export(self, table: str, location: str, compression: str = "snappy") -> ExportRecord:
        """Write ``table`` as Parquet parts ``part-<n>.parquet`` at ``location/<table>/exportTime=YYYYmmddHHMMSS/``.

        The engine's own writer makes the parts where it has one (DuckDB, in parallel, to a local
        folder); otherwise the table is streamed through pyarrow into a staging folder that is moved into place
        when complete, so a reader never sees a partial export. No rows pass through pandas.
        """
        check_name(table)
        if compression not in PARQUET_COMPRESSIONS:
            raise ValueError(f"compression must be one of {sorted(PARQUET_COMPRESSIONS)}, not {compression!r}")
        fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
        export_time = self._free_export_time(fs, f"{root}/{table}")
        export_id = uuid.uuid4().hex
        staging = f"{root}/{table}/_staging-{export_id}"
        final = f"{root}/{table}/exportTime={export_time}"
        fs.makedirs(f"{root}/{table}", exist_ok=True)
        try:
            with self.engine.connect(read_only=True) as conn:
                if not self.engine.native_export(conn, table, fs, staging, self.export_rows_per_file, compression):
                    batches = self.engine.stream(conn, f'SELECT * FROM "{table}"', 131_072)
                    write_parquet_parts(batches, fs, staging, self.export_rows_per_file, compression)
            fs.mv(staging, final, recursive=True)
        except BaseException:
            if fs.exists(staging):
                fs.rm(staging, recursive=True)
            raise
        parts = sorted(fs.ls(final, detail=False))
        rows = sum(pq.ParquetFile(path, filesystem=fs).metadata.num_rows for path in parts)
        files = len(parts)
        size = sum(fs.size(path) for path in fs.ls(final, detail=False))
        record = ExportRecord(export_id, table, fs.unstrip_protocol(final), export_time, rows, files, size)
        with self.engine.connect() as conn:
            self._ensure_ledger(conn)
            self._execute(
                conn,
                f"INSERT INTO ledger_exports VALUES ({self._marks(8)})",
                [record.id, table, record.path, export_time, rows, files, size, utc_now()],
            )
        logger.info(
            "Exported %s: %s rows in %d files (%s bytes) to %s", table, f"{rows:,}", files, f"{size:,}", record.path
        )
        return record

    @staticmethod
    def _free_export_time(fs: fsspec.AbstractFileSystem, folder: str) -> str:
        """This second's export time, waiting for the next second if an export already took it."""
        while True:
            export_time = utc_now().strftime("%Y%m%d%H%M%S")
            if not fs.exists(f"{folder}/exportTime={export_time}"):
                return export_time
            time.sleep(0.2)

    # -- internals ------------------------------------------------------------------------------

    def _read_ledger(self, table: str, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Rows of a ledger query on a read-only connection; none while the ledger table does not exist."""
        with self.engine.connect(read_only=True) as conn:
            if self.engine.table_columns(conn, table) is None:
                return []
            return self._fetchall(conn, sql, params or [])

    def _marks(self, n: int) -> str:
        """``n`` DB-API placeholders joined by commas."""
        return ", ".join([self.engine.placeholder] * n)

    def _execute(self, conn: Any, sql: str, params: list[Any] | None = None) -> None:
        """Execute one statement in the open transaction."""
        self.engine.fetchall(conn, sql, params)

    def _fetchall(self, conn: Any, sql: str, params: list[Any]) -> list[tuple]:
        """Fetch every row of a small ledger query."""
        return self.engine.fetchall(conn, sql, params)

    def _count(self, conn: Any, table: str) -> int:
        """The number of rows in ``table``."""
        return int(self._fetchall(conn, f'SELECT count(*) FROM "{table}"', [])[0][0])

    def _ensure_ledger(self, conn: Any) -> None:
        """Create the ledger tables if this database has none yet."""
        for ddl in _LEDGER_DDL:
            self._execute(conn, ddl)

    def _register(self, conn: Any, spec: DatasetSpec) -> None:
        """Record (or update) the dataset in the registry."""
        columns = json.dumps({c.name: c.type for c in spec.columns})
        self._execute(conn, f"DELETE FROM ledger_datasets WHERE name = {self.engine.placeholder}", [spec.name])
        self._execute(
            conn,
            f"INSERT INTO ledger_datasets VALUES ({self._marks(5)})",
            [spec.name, columns, spec.identity, spec.profile_enabled, utc_now()],
        )

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
        self._execute(conn, f'CREATE TABLE "{table}" ({ddl})')


def conform_chunk(chunk: pa.Table | pa.RecordBatch | pd.DataFrame, spec: DatasetSpec, index: int) -> pa.Table:
    """Check a chunk against the dataset's schema and return it as an Arrow table in column order.

    Raises :class:`SchemaMismatchError` naming the dataset, chunk, column and number of bad rows
    for a missing or unexpected column, a type that cannot be stored losslessly, or a null identity.
    """
    where = f"dataset {spec.name!r}, chunk {index}"
    if isinstance(chunk, pd.DataFrame):
        chunk = pa.Table.from_pandas(chunk, preserve_index=False)
    elif isinstance(chunk, pa.RecordBatch):
        chunk = pa.Table.from_batches([chunk])
    if not isinstance(chunk, pa.Table):
        raise SchemaMismatchError(f"{where}: expected an Arrow table or DataFrame, got {type(chunk).__name__}")
    missing = [name for name in spec.column_names if name not in chunk.column_names]
    if missing:
        raise SchemaMismatchError(f"{where}: missing column {missing[0]!r} ({chunk.num_rows} rows)")
    extra = [name for name in chunk.column_names if name not in spec.column_names]
    if extra:
        raise SchemaMismatchError(f"{where}: unexpected column {extra[0]!r} ({chunk.num_rows} rows)")
    columns, fields = [], []
    for field in spec.arrow_schema:
        column = chunk.column(field.name)
        stored_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if stored_type != field.type:
            try:
                column = pc.cast(column, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad = _count_uncastable(column, field.type)
                raise SchemaMismatchError(
                    f"{where}: column {field.name!r} has type {column.type}, not {field.type} ({bad} bad rows)"
                ) from None
        columns.append(column)
        fields.append(field.with_type(column.type))  # dictionary-encoded columns stay encoded
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    if spec.identity is not None:
        nulls = table.column(spec.identity).null_count
        if nulls:
            raise SchemaMismatchError(f"{where}: identity column {spec.identity!r} is null in {nulls} rows")
    return table


def _count_uncastable(column: pa.ChunkedArray, target: pa.DataType) -> int:
    """How many non-null values of ``column`` cannot be cast safely to ``target`` (an error path)."""
    bad_values = 0
    counts = pc.value_counts(column.drop_null())
    for item in counts:
        try:
            pc.cast(pa.array([item["values"].as_py()], column.type), target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            bad_values += item["counts"].as_py()
    return bad_values


def write_parquet_parts(
    batches: Iterator[pa.RecordBatch], fs: fsspec.AbstractFileSystem, folder: str, rows_per_file: int, compression: str
) -> None:
    """Write a stream of record batches as ``part-<n>.parquet`` files of at most ``rows_per_file`` rows."""
    fs.makedirs(folder, exist_ok=True)
    writer, files, written = None, 0, 0
    try:
        for batch in batches:
            for start in range(0, batch.num_rows, rows_per_file):
                piece = batch.slice(start, rows_per_file)
                while piece.num_rows:
                    if writer is None or written >= rows_per_file:
                        if writer is not None:
                            writer.close()
                        writer = pq.ParquetWriter(
                            f"{folder}/part-{files}.parquet", piece.schema, filesystem=fs, compression=compression
                        )
                        files, written = files + 1, 0
                    take = piece.slice(0, rows_per_file - written)
                    writer.write_batch(take)
                    written += take.num_rows
                    piece = piece.slice(take.num_rows)
    finally:
        if writer is not None:
            writer.close()
