"""Where the spark backend keeps its tables: Parquet folders under the data root, named by an SQLite ledger.

A table is the list of folders (its *parts*) that the ledger's ``ledger_tables`` row names; a view
is its SQL. Writers write a new folder first, then change the row in one SQLite transaction: that
commit is the only moment a reader's view of the table changes, so a reader sees the old parts or
the new ones, never a partial write. SQLite in WAL mode lets any number of processes (kedro-viz,
notebooks) read the ledger while a run writes it; nothing here needs a metastore service.

A folder that no ledger row names is garbage once its writer is gone: every writer holds a lock
file named after its folder (``<ledger folder>/_locks/<id>.lock``, an ``flock`` that the kernel
releases when the process dies), and recovery deletes unnamed folders whose lock nobody holds. Folders that a commit
replaced are kept for :data:`GRACE_SECONDS`, so that a reader that listed them just before the
commit can finish, then deleted by a later write.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import fsspec

from ..core.ledger import LEDGER_DDL, Ledger
from ..core.port import utc_now

#: How long a replaced folder stays readable after the commit that replaced it.
GRACE_SECONDS = 600

TABLES_DDL = (
    "CREATE TABLE IF NOT EXISTS ledger_tables (name TEXT PRIMARY KEY, kind TEXT NOT NULL, schema TEXT, "
    "parts TEXT NOT NULL, rows BIGINT, view_sql TEXT, updated TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_garbage (part TEXT PRIMARY KEY, superseded TIMESTAMP NOT NULL)",
)

sqlite3.register_adapter(datetime, lambda value: value.isoformat(sep=" "))
sqlite3.register_converter("TIMESTAMP", lambda raw: datetime.fromisoformat(raw.decode()))
sqlite3.register_converter("BOOLEAN", lambda raw: raw not in (b"0", b""))


class SQLiteStore:
    """The ledger's database: one SQLite file in WAL mode (many readers while one process writes)."""

    placeholder = "?"

    def __init__(self, path: str, busy_timeout_seconds: float = 60.0) -> None:
        self.path = path
        self.busy_timeout_seconds = busy_timeout_seconds

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction: committed at the end of the block, rolled back on error."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_seconds, detect_types=sqlite3.PARSE_DECLTYPES, isolation_level=None
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def fetchall(self, conn: sqlite3.Connection, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Execute one statement and return its rows (none for DDL/DML)."""
        return conn.execute(sql, params or []).fetchall()

    def table_columns(self, conn: sqlite3.Connection, table: str) -> list[tuple[str, str]] | None:
        """``[(column, declared type)]`` of a ledger table, or None when it does not exist."""
        rows = conn.execute("SELECT name, type FROM pragma_table_info(?)", [table]).fetchall()
        return [(name, sql_type) for name, sql_type in rows] or None


class TableStore:
    """The data root's tables and views, as the ledger names them, and the folders that hold them."""

    def __init__(self, root: str, ledger: Ledger, locks: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.ledger = ledger
        self.locks = locks  # a local folder beside the ledger: locks live where the writing process runs
        os.makedirs(locks, exist_ok=True)

    def url(self, part: str) -> str:
        """The URL of a part (a folder under the data root), as Spark reads it."""
        return self.fs.unstrip_protocol(f"{self.root}/{part}")

    def new_part(self, table: str, kind: str, part_id: str) -> str:
        """The name of a new folder of ``table`` (relative to the root): ``tables/<table>/<kind>-<id>``."""
        return f"tables/{table}/{kind}-{part_id}"

    def ensure(self, conn: Any) -> None:
        """Create the ledger's tables and the table registry if missing."""
        self.ledger.ensure(conn, LEDGER_DDL + TABLES_DDL)

    def entries(self) -> list[tuple[str, str, str | None, list[str], int | None, str | None]]:
        """Every table and view: ``(name, kind, schema json, parts, rows, view sql)``, oldest first."""
        with self.ledger.engine.connect(read_only=True) as conn:
            return self._entries(conn) if self.ledger.engine.table_columns(conn, "ledger_tables") else []

    def entry(self, conn: Any, name: str) -> tuple[str, str | None, list[str], int | None] | None:
        """``(kind, schema json, parts, rows)`` of ``name`` in the open transaction, or None."""
        rows = self.ledger.fetchall(conn, "SELECT kind, schema, parts, rows FROM ledger_tables WHERE name = ?", [name])
        if not rows:
            return None
        kind, schema, parts, count = rows[0]
        return kind, schema, json.loads(parts), count

    def commit_table(self, conn: Any, name: str, schema: str, parts: list[str], rows: int) -> None:
        """Make ``parts`` the table ``name`` (in the open transaction); the parts it had go to the garbage list."""
        before = self.entry(conn, name)
        self._put(conn, name, "table", schema, parts, rows, None)
        for part in before[2] if before else []:
            if part not in parts:
                self.ledger.execute(conn, "INSERT OR REPLACE INTO ledger_garbage VALUES (?, ?)", [part, utc_now()])

    def commit_view(self, conn: Any, name: str, sql: str) -> None:
        """Define the view ``name`` as ``sql`` (Spark SQL), in the open transaction."""
        self._put(conn, name, "view", None, [], None, sql)

    def _put(
        self, conn: Any, name: str, kind: str, schema: str | None, parts: list[str], rows: int | None, sql: str | None
    ) -> None:
        """Insert or replace one registry row."""
        self.ledger.execute(
            conn,
            "INSERT OR REPLACE INTO ledger_tables (name, kind, schema, parts, rows, view_sql, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [name, kind, schema, json.dumps(parts), rows, sql, utc_now()],
        )

    @contextmanager
    def hold(self, part_id: str) -> Iterator[None]:
        """Hold ``part_id`` live while the block runs: an exclusive ``flock`` the kernel drops if we die."""
        path = os.path.join(self.locks, f"{part_id}.lock")
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if os.path.exists(path):
            os.remove(path)

    def is_live(self, part_id: str) -> bool:
        """Whether some process (this one included) holds ``part_id`` live now."""
        path = os.path.join(self.locks, f"{part_id}.lock")
        try:
            handle = open(path)  # noqa: SIM115 - closed below, whatever happens
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            handle.close()
        return False

    def collect(self, conn: Any) -> list[str]:
        """Delete what no reader can see: folders no registry row names whose writer is gone, and replaced
        folders past their grace period. Returns the deleted folders."""
        named = {part for _, _, _, parts, _, _ in self._entries(conn) for part in parts}
        deleted = []
        for folder in self.fs.glob(f"{self.root}/tables/*/*"):
            part = folder.removeprefix(f"{self.root}/")
            part_id = part.rsplit("-", 1)[-1]
            if part not in named and not self.is_live(part_id) and not self._in_grace(conn, part):
                self.fs.rm(folder, recursive=True)
                deleted.append(part)
        self.ledger.execute(
            conn, "DELETE FROM ledger_garbage WHERE superseded < ?", [utc_now() - timedelta(seconds=GRACE_SECONDS)]
        )
        return deleted

    def _in_grace(self, conn: Any, part: str) -> bool:
        """Whether ``part`` was replaced less than :data:`GRACE_SECONDS` ago."""
        rows = self.ledger.fetchall(conn, "SELECT superseded FROM ledger_garbage WHERE part = ?", [part])
        return bool(rows) and rows[0][0] > utc_now() - timedelta(seconds=GRACE_SECONDS)

    def _entries(self, conn: Any) -> list[tuple[str, str, str | None, list[str], int | None, str | None]]:
        """:meth:`entries` in the open transaction, oldest first."""
        rows = self.ledger.fetchall(
            conn, "SELECT name, kind, schema, parts, rows, view_sql FROM ledger_tables ORDER BY updated"
        )
        return [(name, kind, schema, json.loads(parts), count, sql) for name, kind, schema, parts, count, sql in rows]
