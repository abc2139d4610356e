"""The ledger of the backends that keep their own: ``ledger_*`` tables in a SQL database of theirs.

Later runs and notebooks read what really happened from it: the dataset registry, batches,
exports, query jobs, audiences, audience jobs and deliveries. The local backend keeps it in the
platform's own database; the spark backend in an SQLite file beside its tables. Every statement
binds its values (the store's placeholders); only names chosen in the platform reach the SQL text.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol


class LedgerStore(Protocol):
    """What the ledger needs from the database that holds it (a local engine, or the spark backend's SQLite)."""

    placeholder: str

    def connect(self, read_only: bool = False) -> AbstractContextManager[Any]:
        """A context manager giving a DB-API connection inside one transaction."""
        ...

    def fetchall(self, conn: Any, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Execute one statement in the open transaction and return its rows (none for DDL/DML)."""
        ...

    def table_columns(self, conn: Any, table: str) -> list[tuple[str, str]] | None:
        """``[(column, sql type)]`` of an existing table, or None when it does not exist."""
        ...

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS ledger_datasets (name TEXT PRIMARY KEY, columns TEXT NOT NULL, "
    "identity TEXT, profile_enabled BOOLEAN NOT NULL, updated TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_batches (id TEXT PRIMARY KEY, dataset TEXT NOT NULL, "
    "status TEXT NOT NULL, rows BIGINT NOT NULL, files BIGINT NOT NULL, created TIMESTAMP NOT NULL, "
    "completed TIMESTAMP, error TEXT, run_id TEXT, owner TEXT)",
    "CREATE TABLE IF NOT EXISTS ledger_exports (id TEXT PRIMARY KEY, table_name TEXT NOT NULL, "
    "path TEXT NOT NULL, export_time TEXT NOT NULL, rows BIGINT NOT NULL, files BIGINT NOT NULL, "
    "bytes BIGINT NOT NULL, created TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_queries (id TEXT PRIMARY KEY, table_name TEXT NOT NULL, "
    "status TEXT NOT NULL, rows BIGINT, started TIMESTAMP NOT NULL, completed TIMESTAMP, error TEXT)",
)
#: Columns added since a ledger table was first made: ``(table, column, SQL type)``, added to an older ledger.
LEDGER_MIGRATIONS = (("ledger_batches", "run_id", "TEXT"), ("ledger_batches", "owner", "TEXT"))
AUDIENCE_DDL = (
    "CREATE TABLE IF NOT EXISTS ledger_audiences (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "description TEXT NOT NULL, rule TEXT NOT NULL, source TEXT NOT NULL, version BIGINT NOT NULL, "
    "created TIMESTAMP NOT NULL, updated TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_audience_jobs (id TEXT PRIMARY KEY, audience_id TEXT NOT NULL, "
    "audience_name TEXT NOT NULL, status TEXT NOT NULL, members BIGINT NOT NULL, started TIMESTAMP NOT NULL, "
    "completed TIMESTAMP, error TEXT)",
    "CREATE TABLE IF NOT EXISTS ledger_deliveries (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, "
    "audience_name TEXT NOT NULL, destination TEXT NOT NULL, status TEXT NOT NULL, members BIGINT NOT NULL, "
    "files BIGINT NOT NULL, requests BIGINT NOT NULL, bytes BIGINT NOT NULL, started TIMESTAMP NOT NULL, "
    "completed TIMESTAMP, location TEXT, error TEXT)",
    "CREATE TABLE IF NOT EXISTS audience_membership (audience_id TEXT NOT NULL, audience_name TEXT NOT NULL, "
    "job_id TEXT NOT NULL, ecid TEXT NOT NULL, evaluated_at TIMESTAMP NOT NULL)",
)


def error_text(exc: BaseException) -> str:
    """A one-line description of an error for the ledger."""
    return f"{type(exc).__name__}: {exc}"[:2000]


class Ledger:
    """Statements on the ledger tables of one store, in a transaction the caller opened."""

    def __init__(self, engine: LedgerStore) -> None:
        self.engine = engine

    def marks(self, n: int) -> str:
        """``n`` DB-API placeholders joined by commas."""
        return ", ".join([self.engine.placeholder] * n)

    def execute(self, conn: Any, sql: str, params: list[Any] | None = None) -> None:
        """Execute one statement in the open transaction."""
        self.engine.fetchall(conn, sql, params)

    def fetchall(self, conn: Any, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Every row of a small query in the open transaction."""
        return self.engine.fetchall(conn, sql, params or [])

    def count(self, conn: Any, table: str) -> int:
        """The number of rows in ``table`` (a checked name)."""
        return int(self.fetchall(conn, f'SELECT count(*) FROM "{table}"')[0][0])

    def ensure(self, conn: Any, ddl: tuple[str, ...] = LEDGER_DDL) -> None:
        """Create the ledger tables of ``ddl`` if this database has none yet, and add the columns of
        :data:`LEDGER_MIGRATIONS` that an older ledger lacks."""
        for statement in ddl:
            self.execute(conn, statement)
        for table, column, sql_type in LEDGER_MIGRATIONS:
            have = self.engine.table_columns(conn, table)
            if have is not None and column not in {name for name, _ in have}:
                self.execute(conn, f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

    def insert(self, conn: Any, table: str, columns: str, values: list[Any]) -> None:
        """Insert one row of ``values`` into the ledger table ``table`` (``columns`` named in this package)."""
        self.execute(conn, f"INSERT INTO {table} ({columns}) VALUES ({self.marks(len(values))})", values)

    def update(self, conn: Any, table: str, row_id: str, **fields: Any) -> None:
        """Set fields (names from this package, values bound) of one row of a ledger table."""
        mark = self.engine.placeholder
        assignments = ", ".join(f"{name} = {mark}" for name in fields)
        self.execute(conn, f"UPDATE {table} SET {assignments} WHERE id = {mark}", [*fields.values(), row_id])

    def read(self, table: str, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Rows of a ledger query on a read-only connection; none while the ledger table does not exist."""
        with self.engine.connect(read_only=True) as conn:
            if self.engine.table_columns(conn, table) is None:
                return []
            return self.fetchall(conn, sql, params)
