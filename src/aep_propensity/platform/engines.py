"""The SQL engines under the local platform: an embedded DuckDB file, or PostgreSQL via psycopg2.

An engine knows only how to connect, move Arrow data in and out in bulk, and which SQL dialect it
speaks. Everything else (ledger, batches, validation) is engine-neutral in :mod:`.local`.
A connection is opened per operation and closed after it, never held between operations.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import duckdb
import fsspec
import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv
from fsspec.implementations.local import LocalFileSystem

from .port import ARROW_TYPES, Column
from .sql import literal

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}
_DUCKDB_VECTOR = 2_048  # DuckDB's row groups are whole numbers of vectors of this many rows
_POSTGRES_TYPES = {
    "string": "TEXT",
    "int64": "BIGINT",
    "float64": "DOUBLE PRECISION",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP WITHOUT TIME ZONE",
    "date": "DATE",
}  # as information_schema names them


class Engine(Protocol):
    """What the local platform needs from a SQL engine."""

    dialect: str
    placeholder: str

    def connect(self, read_only: bool = False) -> Any:
        """A context manager giving a DB-API connection inside one transaction."""
        ...

    def sql_type(self, column: Column) -> str:
        """The engine's SQL type for a logical column type."""
        ...

    def commit(self, conn: Any) -> None:
        """Commit the open transaction and start the next one on the same connection."""
        ...

    def fetchall(self, conn: Any, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Execute one statement in the open transaction and return its rows (none for DDL/DML)."""
        ...

    def append(self, conn: Any, table: str, data: pa.Table) -> None:
        """Append an Arrow table whose columns match ``table``'s, in the open transaction."""
        ...

    def stream(self, conn: Any, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream the result of ``sql`` as record batches."""
        ...

    def fetch_arrow(self, conn: Any, sql: str, max_rows: int) -> pa.Table:
        """Fetch at most ``max_rows`` rows of ``sql`` as an Arrow table."""
        ...

    def table_columns(self, conn: Any, table: str) -> list[tuple[str, str]] | None:
        """``[(column, sql type)]`` of an existing table, or None when it does not exist."""
        ...

    def native_export(
        self, conn: Any, table: str, fs: fsspec.AbstractFileSystem, folder: str, rows_per_file: int, compression: str
    ) -> bool:
        """Write ``table`` into ``folder`` as ``part-<n>.parquet`` files of at most ``rows_per_file`` rows with
        the engine's own writer, if it has one for this filesystem; False leaves it to the caller."""
        ...


class DuckDBEngine:
    """The embedded default: one DuckDB database file, no server."""

    dialect = "duckdb"
    placeholder = "?"

    def __init__(self, path: str, memory_limit: str = "4GB", threads: int = 2) -> None:
        self.path = str(path)
        self.memory_limit = memory_limit
        self.threads = int(threads)

    def __repr__(self) -> str:
        return f"DuckDBEngine(path={self.path!r})"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the database file inside one transaction; a read before the file exists sees an empty
        database (in memory) rather than creating the file."""
        config = {"memory_limit": self.memory_limit, "threads": self.threads}
        if read_only and not Path(self.path).exists():
            conn = duckdb.connect(":memory:", config=config)
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = duckdb.connect(self.path, read_only=read_only, config=config)
        try:
            conn.begin()
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def sql_type(self, column: Column) -> str:
        """DuckDB's type for a logical column type."""
        return _DUCKDB_TYPES[column.type]

    def commit(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Commit and begin again (DuckDB's transactions are explicit here)."""
        conn.commit()
        conn.begin()

    def fetchall(self, conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Execute on the connection itself (a DuckDB cursor would be another connection)."""
        result = conn.execute(sql, params)
        return result.fetchall() if result.description else []

    def append(self, conn: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
        """Insert an Arrow table through DuckDB's zero-copy scan of Arrow memory."""
        conn.register("_incoming", data)
        try:
            conn.execute(f'INSERT INTO "{table}" SELECT * FROM _incoming')
        finally:
            conn.unregister("_incoming")

    def stream(self, conn: duckdb.DuckDBPyConnection, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """DuckDB's own streaming Arrow reader."""
        yield from conn.sql(sql).to_arrow_reader(batch_rows)

    def fetch_arrow(self, conn: duckdb.DuckDBPyConnection, sql: str, max_rows: int) -> pa.Table:
        """Fetch at most ``max_rows`` rows (a result may arrive in several batches)."""
        reader = conn.sql(sql).to_arrow_reader(max_rows)
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch.slice(0, max_rows - rows))
            rows += batches[-1].num_rows
            if rows >= max_rows:
                break
        return pa.Table.from_batches(batches, schema=reader.schema)

    def native_export(
        self,
        conn: duckdb.DuckDBPyConnection,
        table: str,
        fs: fsspec.AbstractFileSystem,
        folder: str,
        rows_per_file: int,
        compression: str,
    ) -> bool:
        """DuckDB's own parallel ``COPY ... TO``, for a local folder and files of at least one of its row groups
        (a multiple of its 2,048-row vectors)."""
        if not isinstance(fs, LocalFileSystem) or rows_per_file < _DUCKDB_VECTOR:
            return False
        row_group = min(rows_per_file, 122_880) // _DUCKDB_VECTOR * _DUCKDB_VECTOR
        conn.execute(
            f'COPY (SELECT * FROM "{table}") TO {literal(folder)} (FORMAT parquet, COMPRESSION {compression}, '
            f"FILENAME_PATTERN 'part-{{i}}', ROW_GROUP_SIZE {row_group}, "
            f"ROW_GROUPS_PER_FILE {max(1, rows_per_file // row_group)})"
        )
        return True

    def table_columns(self, conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]] | None:
        """Columns from DuckDB's information schema."""
        rows = self.fetchall(
            conn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
        return rows or None


class PostgresEngine:
    """PostgreSQL through psycopg2: the stand-in for Query Service, which speaks its wire protocol."""

    dialect = "postgres"
    placeholder = "%s"

    def __init__(self, dsn: str, schema: str = "aep_propensity") -> None:
        self._dsn = dsn
        self.schema = schema

    def __repr__(self) -> str:
        return f"PostgresEngine(schema={self.schema!r})"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[psycopg2.extensions.connection]:
        """Connect, make the platform schema current, and run the block in one transaction."""
        try:
            conn = psycopg2.connect(self._dsn, connect_timeout=10)
        except psycopg2.OperationalError as exc:
            raise ConnectionError(f"cannot connect to PostgreSQL for schema {self.schema!r}: {exc}") from None
        try:
            conn.set_session(readonly=read_only)
            with conn.cursor() as cur:
                if not read_only:
                    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                cur.execute(f'SET search_path TO "{self.schema}"')
            yield conn
            conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
        finally:
            conn.close()

    def sql_type(self, column: Column) -> str:
        """PostgreSQL's type for a logical column type."""
        return _POSTGRES_TYPES[column.type]

    def commit(self, conn: psycopg2.extensions.connection) -> None:
        """Commit; psycopg2 opens the next transaction by itself."""
        conn.commit()

    def fetchall(self, conn: psycopg2.extensions.connection, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Execute through a cursor of the connection."""
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def append(self, conn: psycopg2.extensions.connection, table: str, data: pa.Table) -> None:
        """COPY the rows in as CSV written by Arrow (no Python loop over rows)."""
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer)
        buffer.seek(0)
        columns = ", ".join(f'"{name}"' for name in data.column_names)
        with conn.cursor() as cur:
            cur.copy_expert(f'COPY "{table}" ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)', buffer)

    def stream(self, conn: psycopg2.extensions.connection, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """``COPY (sql) TO STDOUT`` in a thread, parsed by Arrow's streaming CSV reader through a pipe."""
        schema = self._result_schema(conn, sql)
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def produce() -> None:
            with os.fdopen(write_fd, "wb") as sink, conn.cursor() as cur:
                try:
                    cur.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", sink)
                except BaseException as exc:  # re-raised in the consumer
                    failure.append(exc)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        with os.fdopen(read_fd, "rb") as source:
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                convert_options=pacsv.ConvertOptions(
                    column_types=schema,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    true_values=["t"],
                    false_values=["f"],
                ),
            )
            for batch in reader:
                yield from (batch.slice(i, batch_rows) for i in range(0, batch.num_rows, batch_rows))
        producer.join()
        if failure:
            raise failure[0]

    def fetch_arrow(self, conn: psycopg2.extensions.connection, sql: str, max_rows: int) -> pa.Table:
        """Fetch at most ``max_rows`` rows through the streaming reader."""
        limited = f"SELECT * FROM ({sql}) AS q LIMIT {int(max_rows)}"
        schema = self._result_schema(conn, limited)
        return pa.Table.from_batches(list(self.stream(conn, limited, max_rows)), schema=schema)

    def native_export(
        self,
        conn: psycopg2.extensions.connection,
        table: str,
        fs: fsspec.AbstractFileSystem,
        folder: str,
        rows_per_file: int,
        compression: str,
    ) -> bool:
        """PostgreSQL has no Parquet writer: the caller streams the table."""
        return False

    def table_columns(self, conn: psycopg2.extensions.connection, table: str) -> list[tuple[str, str]] | None:
        """Columns from PostgreSQL's information schema."""
        rows = self.fetchall(
            conn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [self.schema, table],
        )
        return rows or None

    @staticmethod
    def _result_schema(conn: psycopg2.extensions.connection, sql: str) -> pa.Schema:
        """The Arrow schema of a query's result, from the type OIDs PostgreSQL describes."""
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
            return pa.schema([pa.field(d.name, _arrow_type_for_oid(d.type_code)) for d in cur.description])


_OID_TYPES = {
    16: "bool",
    20: "int64",
    21: "int64",
    23: "int64",
    700: "float64",
    701: "float64",
    1700: "float64",
    25: "string",
    1043: "string",
    1042: "string",
    19: "string",
    1114: "timestamp",
    1082: "date",
}


def _arrow_type_for_oid(oid: int) -> pa.DataType:
    """Map a PostgreSQL type OID to an Arrow type (text for anything unlisted)."""
    return ARROW_TYPES[_OID_TYPES.get(oid, "string")]
