"""The embedded default engine: one DuckDB database file, no server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from ..core.port import Column
from ..core.sql import literal
from .engines import in_transaction

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}
_DUCKDB_VECTOR = 2_048  # DuckDB's row groups are whole numbers of vectors of this many rows

# The batches this process is loading, by database file. A DuckDB file open for writing is locked to
# one process, so while a connection is open no other process can be loading: a batch is live only if
# this process holds it.
_LIVE_BATCHES: set[tuple[str, str]] = set()
_LIVE_LOCK = threading.Lock()


class DuckDBEngine:
    """The embedded default: one DuckDB database file, no server."""

    dialect = "duckdb"
    placeholder = "?"
    stores_nul = True

    def __init__(
        self, path: str, memory_limit: str = "4GB", threads: int = 2, lock_timeout_seconds: float = 60.0
    ) -> None:
        self.path = str(path)
        self.memory_limit = memory_limit
        self.threads = int(threads)
        self.lock_timeout_seconds = float(lock_timeout_seconds)

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
            conn = self._open_file(read_only, config)
        with in_transaction(conn, conn.close):
            conn.begin()
            yield conn

    def _open_file(self, read_only: bool, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
        """Open the database file, waiting up to ``lock_timeout_seconds`` while another process holds it
        (DuckDB locks a file open for writing to one process)."""
        deadline = time.monotonic() + self.lock_timeout_seconds
        pause = 0.05
        while True:
            try:
                return duckdb.connect(self.path, read_only=read_only, config=config)
            except duckdb.IOException as exc:
                if "Could not set lock" not in str(exc) or time.monotonic() >= deadline:
                    raise ConnectionError(
                        f"cannot open the DuckDB file {self.path!r} within {self.lock_timeout_seconds:g} s: {exc}"
                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

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

    def replace_table(self, conn: duckdb.DuckDBPyConnection, staging: str, table: str) -> None:
        """Drop ``table`` and rename ``staging`` over it (DuckDB binds views by name, so views of it stay valid)."""
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        conn.execute(f'ALTER TABLE "{staging}" RENAME TO "{table}"')

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

    @contextmanager
    def hold_batch(self, conn: duckdb.DuckDBPyConnection, batch_id: str) -> Iterator[None]:
        """Mark the batch live in this process for the block."""
        key = (self.path, batch_id)
        with _LIVE_LOCK:
            _LIVE_BATCHES.add(key)
        try:
            yield
        finally:
            with _LIVE_LOCK:
                _LIVE_BATCHES.discard(key)

    def batch_is_live(self, conn: duckdb.DuckDBPyConnection, batch_id: str) -> bool:
        """Whether this process holds the batch (no other process can while ``conn`` is open)."""
        with _LIVE_LOCK:
            return (self.path, batch_id) in _LIVE_BATCHES

    def table_names(self, conn: duckdb.DuckDBPyConnection) -> list[str]:
        """The base tables of the current schema."""
        rows = self.fetchall(
            conn,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        return [name for (name,) in rows]

    def table_columns(self, conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]] | None:
        """Columns from DuckDB's information schema."""
        rows = self.fetchall(
            conn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
        return rows or None
