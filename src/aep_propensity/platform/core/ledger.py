"""The ledger of the backends that keep their own: ``ledger_*`` tables in a SQL database of theirs.

Later runs and notebooks read what really happened from it: the dataset registry, batches,
exports, query jobs, audiences, audience jobs and deliveries. The local backend keeps it in the
platform's own database; the spark backend in an SQLite file beside its tables. Every statement
binds its values (the store's placeholders); only names chosen in the platform reach the SQL text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import uuid
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from .port import (
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    BatchRecord,
    DatasetSpec,
    Delivery,
    DeliveryResult,
    ExportRecord,
    PlatformError,
    ProfileSource,
    jobs_to_deliver,
    latest_successful,
    utc_now,
)


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
)
#: The local backend's membership table, in the platform's database beside the ledger (the spark backend
#: keeps it as one of its tables).
MEMBERSHIP_DDL = (
    "CREATE TABLE IF NOT EXISTS audience_membership (audience_id TEXT NOT NULL, audience_name TEXT NOT NULL, "
    "job_id TEXT NOT NULL, ecid TEXT NOT NULL, evaluated_at TIMESTAMP NOT NULL)",
)


BATCH_COLUMNS = "id, dataset, status, rows, files, created, completed, error, run_id, owner"
_RECORD_COLUMNS = "id, dataset, status, rows, files, created, completed, error, run_id"  # BatchRecord's fields
_DATASET_COLUMNS = "name, columns, identity, profile_enabled, updated"
_EXPORT_COLUMNS = "id, table_name, path, export_time, rows, files, bytes, created"
_QUERY_COLUMNS = "id, table_name, status, rows, started, completed, error"
JOB_COLUMNS = "id, audience_id, audience_name, status, members, started, completed, error"
_AUDIENCE_COLUMNS = "id, name, description, rule, source, version, created, updated"
DELIVERY_COLUMNS = (
    "id, job_id, audience_name, destination, status, members, files, requests, bytes, started, "
    "completed, location, error"
)


logger = logging.getLogger(__name__)

_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def batch_owner() -> str:
    """Who is loading a batch: this host and process."""
    return f"{socket.gethostname()} pid {os.getpid()}"


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

    # -- records: what every backend with a ledger writes and reads the same way --------------------

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The ledger's batches, newest first, optionally for one dataset."""
        sql = f"SELECT {_RECORD_COLUMNS} FROM ledger_batches"
        params: list[Any] = []
        if dataset is not None:
            sql += f" WHERE dataset = {self.engine.placeholder}"
            params.append(dataset)
        rows = self.read("ledger_batches", sql + " ORDER BY created DESC", params)
        return [BatchRecord(*row) for row in rows]

    def start_batch(self, conn: Any, batch_id: str, dataset: str, created: datetime, run_id: str) -> None:
        """Record a batch ``loading``, with the run that makes it and its owner (this host and process)."""
        self.insert(
            conn,
            "ledger_batches",
            BATCH_COLUMNS,
            [batch_id, dataset, "loading", 0, 0, created, None, None, run_id, batch_owner()],
        )

    def abandon_batch(self, conn: Any, batch_id: str, owner: str | None) -> None:
        """Mark a ``loading`` batch whose owner died failed, saying who it was and who recovered it."""
        owner = owner or "an earlier version of this platform"
        self.update(
            conn,
            "ledger_batches",
            batch_id,
            status="failed",
            completed=utc_now(),
            error=f"abandoned: its owner ({owner}) stopped mid-batch; recovered by {batch_owner()}",
        )
        logger.warning("Recovered batch %s: its owner (%s) stopped before it ended", batch_id, owner)

    def datasets(self) -> pd.DataFrame:
        """The dataset registry: name, columns and types, identity column, profile flag."""
        rows = self.read("ledger_datasets", f"SELECT {_DATASET_COLUMNS} FROM ledger_datasets ORDER BY name")
        frame = pd.DataFrame(rows, columns=_DATASET_COLUMNS.split(", "))
        frame["columns"] = frame["columns"].map(json.loads)
        return frame

    def register(self, conn: Any, spec: DatasetSpec) -> None:
        """Record (or update) the dataset in the registry (an upsert: two first batches of a dataset may race)."""
        columns = json.dumps({c.name: c.type for c in spec.columns})
        self.execute(
            conn,
            f"INSERT INTO ledger_datasets ({_DATASET_COLUMNS}) VALUES ({self.marks(5)}) ON CONFLICT (name) "
            "DO UPDATE SET columns = excluded.columns, identity = excluded.identity, "
            "profile_enabled = excluded.profile_enabled, updated = excluded.updated",
            [spec.name, columns, spec.identity, spec.profile_enabled, utc_now()],
        )

    def record_export(self, record: ExportRecord) -> None:
        """Record a finished export."""
        with self.engine.connect() as conn:
            self.ensure(conn)
            self.insert(
                conn,
                "ledger_exports",
                _EXPORT_COLUMNS,
                [
                    record.id,
                    record.table,
                    record.path,
                    record.export_time,
                    record.rows,
                    record.files,
                    record.bytes,
                    utc_now(),
                ],
            )

    def record_query(
        self, conn: Any, job_id: str, table: str, started: datetime, rows: int | None, error: str | None = None
    ) -> None:
        """Record a query job that made ``table``: succeeded with ``rows``, or failed with ``error``."""
        status = "failed" if error is not None else "success"
        self.insert(conn, "ledger_queries", _QUERY_COLUMNS, [job_id, table, status, rows, started, utc_now(), error])

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, update it when its rule, description or source changed, else leave it."""
        now, mark = utc_now(), self.engine.placeholder
        with self.engine.connect() as conn:
            self.ensure(conn, AUDIENCE_DDL)
            rows = self.fetchall(
                conn,
                f"SELECT id, description, rule, source, version FROM ledger_audiences WHERE name = {mark}",
                [definition.name],
            )
            if not rows:
                audience_id = uuid.uuid4().hex
                values = [audience_id, definition.name, definition.description, definition.rule, source.to_json()]
                self.insert(conn, "ledger_audiences", _AUDIENCE_COLUMNS, [*values, 1, now, now])
                return AudienceRecord(audience_id, definition.name, definition.rule, 1, "created")
            audience_id, description, rule, stored_source, version = rows[0]
            if (description, rule, stored_source) == (definition.description, definition.rule, source.to_json()):
                return AudienceRecord(audience_id, definition.name, rule, int(version), "unchanged")
            self.execute(
                conn,
                f"UPDATE ledger_audiences SET description = {mark}, rule = {mark}, source = {mark}, "
                f"version = {mark}, updated = {mark} WHERE id = {mark}",
                [definition.description, definition.rule, source.to_json(), int(version) + 1, now, audience_id],
            )
        return AudienceRecord(audience_id, definition.name, definition.rule, int(version) + 1, "updated")

    def start_audience_job(self, audience_id: str) -> tuple[AudienceJob, str, ProfileSource]:
        """Record a new ``PROCESSING`` job of the audience; return it with the audience's rule and source."""
        with self.engine.connect() as conn:
            self.ensure(conn, AUDIENCE_DDL)
            rows = self.fetchall(
                conn,
                f"SELECT name, rule, source FROM ledger_audiences WHERE id = {self.engine.placeholder}",
                [audience_id],
            )
            if not rows:
                raise PlatformError(f"no audience with id {audience_id!r}")
            name, rule, source_json = rows[0]
            job = AudienceJob(uuid.uuid4().hex, audience_id, name, "PROCESSING", 0, utc_now(), None)
            self.insert(
                conn,
                "ledger_audience_jobs",
                JOB_COLUMNS,
                [job.id, audience_id, name, job.status, 0, job.started, None, None],
            )
        return job, rule, ProfileSource.from_config(json.loads(source_json))

    def finish_audience_job(self, conn: Any, job: AudienceJob, members: int) -> AudienceJob:
        """Mark the job succeeded with its member count, in the caller's transaction."""
        completed = utc_now()
        self.update(conn, "ledger_audience_jobs", job.id, status="SUCCEEDED", members=members, completed=completed)
        return AudienceJob(job.id, job.audience_id, job.audience_name, "SUCCEEDED", members, job.started, completed)

    def fail_audience_job(self, job: AudienceJob, exc: BaseException) -> None:
        """Mark the job failed with the error."""
        with self.engine.connect() as conn:
            self.update(
                conn, "ledger_audience_jobs", job.id, status="FAILED", completed=utc_now(), error=str(exc)[:2000]
            )

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The audience jobs, newest first; by default only each audience's latest successful one."""
        rows = self.read(
            "ledger_audience_jobs", f"SELECT {JOB_COLUMNS} FROM ledger_audience_jobs ORDER BY started DESC"
        )
        jobs = [AudienceJob(*row) for row in rows]
        return jobs if not latest_only else latest_successful(jobs)

    def succeeded_job(self, job_id: str) -> tuple[AudienceJob, ProfileSource, int]:
        """The successful audience job ``job_id``, its audience's profile source and version."""
        with self.engine.connect() as conn:
            self.ensure(conn, AUDIENCE_DDL)
            rows = self.fetchall(
                conn,
                f"SELECT {', '.join('j.' + c for c in JOB_COLUMNS.split(', '))}, a.source, a.version "
                f"FROM ledger_audience_jobs AS j JOIN ledger_audiences AS a "
                f"ON a.id = j.audience_id WHERE j.id = {self.engine.placeholder}",
                [job_id],
            )
        if not rows or rows[0][3] != "SUCCEEDED":
            raise PlatformError(f"audience job {job_id} does not exist or did not succeed")
        return AudienceJob(*rows[0][:8]), ProfileSource.from_config(json.loads(rows[0][8])), int(rows[0][9])

    def jobs_to_send(
        self, job_ids: list[str], destination: str, force: bool
    ) -> list[tuple[AudienceJob, ProfileSource, int]]:
        """The jobs of ``job_ids`` to deliver to ``destination``, each with its audience's source and version:
        every id is checked first (a malformed id, or a job that did not succeed, is an error before anything
        is sent), then the core's delivery policy (:func:`.jobs_to_deliver`) skips what was delivered."""
        for job_id in job_ids:
            if not _HEX_ID.match(job_id):
                raise PlatformError(f"not an audience job id: {job_id!r}")
        evaluated = {job.id: (job, source, version) for job, source, version in map(self.succeeded_job, job_ids)}
        chosen = jobs_to_deliver(
            [job for job, _, _ in evaluated.values()], destination, self.deliveries(destination), force
        )
        return [evaluated[job.id] for job in chosen]

    def start_delivery(self, job: AudienceJob, destination: str) -> tuple[str, datetime]:
        """Record a ``running`` delivery of ``job`` to ``destination``; return its id and start."""
        delivery_id, started = uuid.uuid4().hex, utc_now()
        with self.engine.connect() as conn:
            self.insert(
                conn,
                "ledger_deliveries",
                DELIVERY_COLUMNS,
                [delivery_id, job.id, job.audience_name, destination, "running", 0, 0, 0, 0, started, None, None, None],
            )
        return delivery_id, started

    def fail_delivery(self, delivery_id: str, exc: BaseException) -> None:
        """Mark a delivery failed with the error (an interrupt too: it is over)."""
        with self.engine.connect() as conn:
            self.update(
                conn, "ledger_deliveries", delivery_id, status="failed", completed=utc_now(), error=error_text(exc)
            )

    def finish_delivery(
        self, delivery_id: str, job: AudienceJob, destination: str, started: datetime, result: DeliveryResult
    ) -> Delivery:
        """Record what the destination did with the delivery; return the ledger's record of it."""
        delivery = result.delivery(delivery_id, job, destination, started)
        with self.engine.connect() as conn:
            self.update(
                conn,
                "ledger_deliveries",
                delivery_id,
                status=delivery.status,
                members=delivery.members,
                files=delivery.files,
                requests=delivery.requests,
                bytes=delivery.bytes,
                completed=delivery.completed,
                location=delivery.location,
            )
        return delivery

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The ledger's deliveries, newest first, optionally to one destination."""
        sql, params = f"SELECT {DELIVERY_COLUMNS} FROM ledger_deliveries", []
        if destination is not None:
            sql, params = sql + f" WHERE destination = {self.engine.placeholder}", [destination]
        rows = self.read("ledger_deliveries", sql + " ORDER BY started DESC", params)
        return [Delivery(*row) for row in rows]
