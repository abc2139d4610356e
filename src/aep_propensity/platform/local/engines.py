"""What the local platform needs from a SQL engine, and the one transaction wrapper its engines share.

An engine knows only how to connect, move Arrow data in and out in bulk, and which SQL dialect it
speaks (:mod:`.duckdb_engine`, :mod:`.postgres_engine`). Everything else (ledger, batches,
validation) is engine-neutral in the local platform's components. A connection is opened per
operation and closed after it, never held between operations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import fsspec
import pyarrow as pa

from ..core.port import Column
from ..core.sql import transpile


@contextmanager
def in_transaction(conn: Any, release: Callable[[], None]) -> Iterator[Any]:
    """Run the block as one transaction of the DB-API connection ``conn``: commit at its end, roll back
    on any error (an interrupt included), then ``release`` the connection (close it, or return it to a pool)."""
    try:
        yield conn
        conn.commit()
    except BaseException:
        if not getattr(conn, "closed", False):
            conn.rollback()
        raise
    finally:
        release()


class Engine(Protocol):
    """What the local platform needs from a SQL engine."""

    dialect: str
    placeholder: str
    stores_nul: bool  # whether its text can hold a NUL character (ingestion refuses it where not)

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

    def replace_table(self, conn: Any, staging: str, table: str) -> None:
        """Put the rows of table ``staging`` in place of ``table``'s in the open transaction; ``staging`` goes."""
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

    def table_names(self, conn: Any) -> list[str]:
        """The names of the platform's tables (views excluded)."""
        ...

    def hold_batch(self, conn: Any, batch_id: str) -> AbstractContextManager[None]:
        """Mark the batch live while the block runs on ``conn``; a process that dies mid-block leaves it
        not live, so that a later :meth:`batch_is_live` from any process says False."""
        ...

    def batch_is_live(self, conn: Any, batch_id: str) -> bool:
        """Whether some connection, of this process or another, holds the batch live now."""
        ...

    def native_export(
        self, conn: Any, table: str, fs: fsspec.AbstractFileSystem, folder: str, rows_per_file: int, compression: str
    ) -> bool:
        """Write ``table`` into ``folder`` as ``part-<n>.parquet`` files of at most ``rows_per_file`` rows with
        the engine's own writer, if it has one for this filesystem; False leaves it to the caller."""
        ...


def stream_rows(engine: Engine, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
    """Stream the rows of a canonical-dialect query as record batches, on a read-only connection."""
    with engine.connect(read_only=True) as conn:
        yield from engine.stream(conn, transpile(sql, engine.dialect), batch_rows)
