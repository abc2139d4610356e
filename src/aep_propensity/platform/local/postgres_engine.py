"""The PostgreSQL engine through psycopg2: the stand-in for AEP's Query Service, which speaks its wire protocol."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv

from ..core.port import ARROW_TYPES, Column
from .engines import in_transaction

_POSTGRES_TYPES = {
    "string": "TEXT",
    "int64": "BIGINT",
    "float64": "DOUBLE PRECISION",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP WITHOUT TIME ZONE",
    "date": "DATE",
}  # as information_schema names them


class PostgresEngine:
    """PostgreSQL through psycopg2: the stand-in for Query Service, which speaks its wire protocol."""

    dialect = "postgres"
    placeholder = "%s"
    stores_nul = False  # PostgreSQL's text cannot hold NUL

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
        with in_transaction(conn, conn.close):
            conn.set_session(readonly=read_only)
            with conn.cursor() as cur:
                if not read_only:
                    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                cur.execute(f'SET search_path TO "{self.schema}"')
            yield conn

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

    def replace_table(self, conn: psycopg2.extensions.connection, staging: str, table: str) -> None:
        """Put ``staging`` in place of ``table``. PostgreSQL binds a view to the table itself, so a table that
        views read (``enriched_profiles`` reads ``profiles``) keeps its identity: its rows are replaced
        (TRUNCATE, then INSERT ... SELECT, both transactional). Otherwise ``staging`` is renamed over it."""
        have = self.table_columns(conn, table)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.view_table_usage WHERE table_schema = %s AND table_name = %s",
                [self.schema, table],
            )
            read_by_views = cur.fetchone()[0] > 0
            if read_by_views and have == self.table_columns(conn, staging):
                cur.execute(f'TRUNCATE "{table}"')
                cur.execute(f'INSERT INTO "{table}" SELECT * FROM "{staging}"')
                cur.execute(f'DROP TABLE "{staging}"')
            else:
                cur.execute(f'DROP TABLE IF EXISTS "{table}"')
                cur.execute(f'ALTER TABLE "{staging}" RENAME TO "{table}"')

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
                # a one-column row holding NULL is an empty line: a row, not a line to skip
                parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(
                    column_types=schema,
                    # COPY writes NULL as an unquoted empty field and nothing else: "NA", "NULL", "nan"...
                    # are stored strings, and NaN is a float, so Arrow's other default null markers are off.
                    null_values=[""],
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

    @contextmanager
    def hold_batch(self, conn: psycopg2.extensions.connection, batch_id: str) -> Iterator[None]:
        """Take a session-level advisory lock on the batch: it outlives the batch's commits and goes with
        the session, which :meth:`connect` closes after the block (or the server, when the client dies)."""
        self.fetchall(conn, "SELECT pg_advisory_lock(hashtextextended(%s, 0))", [batch_id])
        yield

    def batch_is_live(self, conn: psycopg2.extensions.connection, batch_id: str) -> bool:
        """Whether another session holds the batch's advisory lock (tried without waiting, and let go)."""
        [(free,)] = self.fetchall(conn, "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [batch_id])
        if free:
            self.fetchall(conn, "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [batch_id])
        return not free

    def table_names(self, conn: psycopg2.extensions.connection) -> list[str]:
        """The base tables of the platform schema."""
        rows = self.fetchall(
            conn,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [self.schema],
        )
        return [name for (name,) in rows]

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
