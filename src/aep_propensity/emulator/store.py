"""The emulator's own state in PostgreSQL: AEP objects as JSON documents, tokens and segment members.

Every object (field group, schema, descriptor, dataset, batch, query, segment, job, connection,
flow, run ...) is one row of ``emu_objects`` keyed by ``(kind, id)``; its body is the JSON the
emulator answers. These ``emu_*`` tables live in their own schema (``<schema>_state``), apart from
the dataset tables (schema ``<schema>``, written through
:class:`~aep_propensity.platform.local.LocalPlatform`), so Query Service SQL, which runs with the
data schema as its only search path, cannot collide with them by name. A restart loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from aep_propensity.platform.core.sql import identifier
from aep_propensity.platform.local.engines import in_transaction

from .errors import not_found

_TABLES = ("emu_objects", "emu_tokens", "emu_segment_members")
_SEQUENCE = "emu_export_job_seq"
_DDL = (
    "CREATE TABLE IF NOT EXISTS emu_objects (kind TEXT NOT NULL, id TEXT NOT NULL, body JSONB NOT NULL, "
    "created DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, id))",
    "CREATE TABLE IF NOT EXISTS emu_tokens (token_sha256 TEXT PRIMARY KEY, client_id TEXT NOT NULL, "
    "expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS emu_segment_members (job_id TEXT NOT NULL, segment_id TEXT NOT NULL, "
    "identity TEXT NOT NULL)",
    "CREATE SEQUENCE IF NOT EXISTS emu_export_job_seq",
)


def _exists(cur: psycopg2.extensions.cursor, schema: str, name: str) -> bool:
    """Whether relation ``schema.name`` exists."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", [qualified(schema, name)])
    return bool(cur.fetchone()[0])


def _move_legacy_state(cur: psycopg2.extensions.cursor, legacy: str, schema: str) -> None:
    """Move ``emu_*`` tables an emulator before the schema split kept among the dataset tables."""
    for name in _TABLES:
        if _exists(cur, legacy, name) and not _exists(cur, schema, name):
            cur.execute(f"ALTER TABLE {qualified(legacy, name)} SET SCHEMA {identifier(schema)}")
    if _exists(cur, legacy, _SEQUENCE) and not _exists(cur, schema, _SEQUENCE):
        cur.execute(f"ALTER SEQUENCE {qualified(legacy, _SEQUENCE)} SET SCHEMA {identifier(schema)}")


def token_digest(token: str) -> str:
    """The SHA-256 of a token: only digests are stored, never tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


def storable_key(ident: object) -> bool:
    """Whether ``ident`` can be a stored object's id: text (a request's JSON may name an id by a number)
    without a NUL character (PostgreSQL text holds none); a lookup of any other finds nothing."""
    return isinstance(ident, str) and "\x00" not in ident


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"`` for checked names."""
    return f"{identifier(schema)}.{identifier(name)}"


class Store:
    """JSON documents, tokens and segment members in the emulator's state schema."""

    def __init__(self, dsn: str, schema: str, legacy_schema: str | None = None) -> None:
        """Open a pool on ``schema`` (created if missing); state an older emulator kept in
        ``legacy_schema`` (its data schema) is moved here once."""
        self.schema = schema
        self._dsn = dsn
        self._pool = psycopg2.pool.ThreadedConnectionPool(1, 12, dsn, connect_timeout=10)
        with self.transaction() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {identifier(schema)}")
            if legacy_schema:
                _move_legacy_state(cur, legacy_schema, schema)
            cur.execute(f"SET search_path TO {identifier(schema)}")
            for ddl in _DDL:
                cur.execute(ddl)

    def __repr__(self) -> str:
        return f"Store(schema={self.schema!r})"

    def table(self, name: str) -> str:
        """A state table's schema-qualified name, for SQL run on connections of the data schema."""
        return qualified(self.schema, name)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.closeall()

    @contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor inside one transaction with the emulator's schema as search path."""
        conn = self._pool.getconn()
        with in_transaction(conn, lambda: self._pool.putconn(conn, close=bool(conn.closed))), conn.cursor() as cur:
            cur.execute(f"SET search_path TO {identifier(self.schema)}")
            yield cur

    # -- objects ----------------------------------------------------------------------------

    def put(self, kind: str, ident: str, body: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace an object; returns ``body``."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO emu_objects (kind, id, body, created) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (kind, id) DO UPDATE SET body = EXCLUDED.body",
                [kind, ident, json.dumps(body), time.time()],
            )
        return body

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        """One object, or None."""
        if not storable_key(ident):
            return None
        with self.transaction() as cur:
            cur.execute("SELECT body FROM emu_objects WHERE kind = %s AND id = %s", [kind, ident])
            row = cur.fetchone()
        return row[0] if row else None

    def get_or_404(self, kind: str, ident: str, what: str, service: str, code: str) -> dict[str, Any]:
        """One object, or AEP's 404 problem document of ``service`` (error ``code``) naming the missing ``what``."""
        body = self.get(kind, ident)
        if body is None:
            raise not_found(what, ident, service, code)
        return body

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every object of a kind, oldest first."""
        with self.transaction() as cur:
            cur.execute("SELECT body FROM emu_objects WHERE kind = %s ORDER BY created, id", [kind])
            return [row[0] for row in cur.fetchall()]

    def update(self, kind: str, ident: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        """Apply ``change`` to an object under a row lock; returns the new body, or None if missing."""
        if not storable_key(ident):
            return None
        with self.transaction() as cur:
            cur.execute("SELECT body FROM emu_objects WHERE kind = %s AND id = %s FOR UPDATE", [kind, ident])
            row = cur.fetchone()
            if row is None:
                return None
            body = row[0]
            change(body)
            cur.execute("UPDATE emu_objects SET body = %s WHERE kind = %s AND id = %s", [json.dumps(body), kind, ident])
        return body

    def delete(self, kind: str, ident: str) -> bool:
        """Delete an object; whether it existed."""
        if not storable_key(ident):
            return False
        with self.transaction() as cur:
            cur.execute("DELETE FROM emu_objects WHERE kind = %s AND id = %s", [kind, ident])
            return cur.rowcount > 0

    def next_export_job_id(self) -> int:
        """The next integer id of a profile export job (AEP numbers them)."""
        with self.transaction() as cur:
            cur.execute("SELECT nextval('emu_export_job_seq')")
            return int(cur.fetchone()[0])

    # -- tokens -----------------------------------------------------------------------------

    def add_token(self, token: str, client_id: str, ttl: float) -> None:
        """Remember a token's digest with its expiry."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO emu_tokens VALUES (%s, %s, %s)", [token_digest(token), client_id, time.time() + ttl]
            )

    def token_valid(self, token: str) -> bool:
        """Whether ``token`` was issued here and has not expired."""
        with self.transaction() as cur:
            cur.execute("SELECT expires_at FROM emu_tokens WHERE token_sha256 = %s", [token_digest(token)])
            row = cur.fetchone()
        return row is not None and row[0] > time.time()

    # -- segment members --------------------------------------------------------------------

    def member_count(self, job_id: str, segment_id: str) -> int:
        """How many profiles a segment job put in a segment."""
        with self.transaction() as cur:
            cur.execute(
                "SELECT count(*) FROM emu_segment_members WHERE job_id = %s AND segment_id = %s", [job_id, segment_id]
            )
            return int(cur.fetchone()[0])
