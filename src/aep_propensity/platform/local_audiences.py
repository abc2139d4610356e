"""Audiences and activation on the local platform: the Segmentation and Destinations roles of AEP.

Audiences are upserted by name into the ledger with their PQL rule and the profile source they
read (a table and the mapping of PQL paths to its columns). Evaluating one compiles the rule to a
SQL predicate with bound parameters, materialises the members in ``audience_membership`` and
records the job like AEP's segment jobs. Activation streams a job's members to a destination and
records the delivery; a job already delivered to a destination is not sent again unless forced.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Any

from .destinations import Destination
from .port import (
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    Delivery,
    PlatformError,
    check_name,
    latest_successful,
    utc_now,
)
from .pql import Field, compile_pql
from .sql import identifier, literal, transpile

logger = logging.getLogger(__name__)

_AUDIENCE_DDL = (
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
_JOB_COLUMNS = "id, audience_id, audience_name, status, members, started, completed, error"
_DELIVERY_COLUMNS = (
    "id, job_id, audience_name, destination, status, members, files, requests, bytes, started, "
    "completed, location, error"
)
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ProfileSource:
    """Where audiences find profiles: a table with an ``ecid`` column, and PQL paths mapped to its columns."""

    table: str
    fields: dict[str, Field]

    def to_json(self) -> str:
        """A stable JSON form, stored with the audience."""
        return json.dumps(
            {"table": self.table, "fields": {k: asdict(v) for k, v in sorted(self.fields.items())}}, sort_keys=True
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ProfileSource:
        """From ``{table, fields: {path: {column, type}}, tenant}``; ``{tenant}`` in a path becomes the tenant."""
        tenant = config.get("tenant", "")
        fields = {path.replace("{tenant}", tenant): Field(**spec) for path, spec in config["fields"].items()}
        return cls(check_name(config["table"]), fields)


class LocalAudiences:
    """Audience and activation operations of :class:`~aep_propensity.platform.local.LocalPlatform`."""

    def _ensure_audience_ledger(self, conn: Any) -> None:
        """Create the audience ledger tables and the membership table if missing."""
        for ddl in _AUDIENCE_DDL:
            self._execute(conn, ddl)

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, update it when its rule, description or source changed, else leave it."""
        compile_pql(definition.rule, source.fields)  # a bad rule is an error before anything is stored
        now, mark = utc_now(), self.engine.placeholder
        with self.engine.connect() as conn:
            self._ensure_audience_ledger(conn)
            rows = self._fetchall(
                conn,
                f"SELECT id, description, rule, source, version FROM ledger_audiences WHERE name = {mark}",
                [definition.name],
            )
            if not rows:
                audience_id = uuid.uuid4().hex
                self._execute(
                    conn,
                    f"INSERT INTO ledger_audiences VALUES ({self._marks(8)})",
                    [
                        audience_id,
                        definition.name,
                        definition.description,
                        definition.rule,
                        source.to_json(),
                        1,
                        now,
                        now,
                    ],
                )
                return AudienceRecord(audience_id, definition.name, definition.rule, 1, "created")
            audience_id, description, rule, stored_source, version = rows[0]
            if (description, rule, stored_source) == (definition.description, definition.rule, source.to_json()):
                return AudienceRecord(audience_id, definition.name, rule, int(version), "unchanged")
            self._execute(
                conn,
                f"UPDATE ledger_audiences SET description = {mark}, rule = {mark}, source = {mark}, "
                f"version = {mark}, updated = {mark} WHERE id = {mark}",
                [definition.description, definition.rule, source.to_json(), int(version) + 1, now, audience_id],
            )
        return AudienceRecord(audience_id, definition.name, definition.rule, int(version) + 1, "updated")

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Evaluate the audience now: its members replace the previous ones in ``audience_membership``."""
        mark = self.engine.placeholder
        with self.engine.connect() as conn:
            self._ensure_audience_ledger(conn)
            rows = self._fetchall(
                conn, f"SELECT name, rule, source FROM ledger_audiences WHERE id = {mark}", [audience_id]
            )
            if not rows:
                raise PlatformError(f"no audience with id {audience_id!r}")
            name, rule, source_json = rows[0]
            job_id, started = uuid.uuid4().hex, utc_now()
            self._execute(
                conn,
                f"INSERT INTO ledger_audience_jobs ({_JOB_COLUMNS}) VALUES ({self._marks(8)})",
                [job_id, audience_id, name, "PROCESSING", 0, started, None, None],
            )
        source = ProfileSource.from_config(json.loads(source_json))
        compiled = compile_pql(rule, source.fields)
        insert = transpile(
            f"INSERT INTO audience_membership SELECT ?, ?, ?, ecid, ? FROM {identifier(source.table)} "
            f"WHERE {compiled.predicate}",
            self.dialect,
        )
        try:
            with self.engine.connect() as conn:
                self._execute(conn, f"DELETE FROM audience_membership WHERE audience_id = {mark}", [audience_id])
                self._execute(conn, insert, [audience_id, name, job_id, started, *compiled.params])
                members = int(
                    self._fetchall(conn, f"SELECT count(*) FROM audience_membership WHERE job_id = {mark}", [job_id])[
                        0
                    ][0]
                )
                self._update_ledger(
                    conn, "ledger_audience_jobs", job_id, status="SUCCEEDED", members=members, completed=utc_now()
                )
        except Exception as exc:
            with self.engine.connect() as conn:
                self._update_ledger(
                    conn, "ledger_audience_jobs", job_id, status="FAILED", completed=utc_now(), error=str(exc)[:2000]
                )
            raise PlatformError(f"evaluating audience {name!r} failed: {exc}") from exc
        logger.info("Audience %s: %s members", name, f"{members:,}")
        return AudienceJob(job_id, audience_id, name, "SUCCEEDED", members, started, utc_now())

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The audience jobs, newest first; by default only each audience's latest successful one."""
        rows = self._read_ledger(
            "ledger_audience_jobs", f"SELECT {_JOB_COLUMNS} FROM ledger_audience_jobs ORDER BY started DESC"
        )
        jobs = [AudienceJob(*row) for row in rows]
        return jobs if not latest_only else latest_successful(jobs)

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver each job's members (ecid plus ``attributes`` of the audience's source) to ``destination``.

        A job already delivered successfully to this destination is skipped unless ``force``.
        """
        columns = [check_name(name, "attribute") for name in attributes]
        deliveries = []
        for job_id in job_ids:
            if not _HEX_ID.match(job_id):
                raise PlatformError(f"not an audience job id: {job_id!r}")
            job, source, sent = self._job_for_delivery(job_id, destination.name)
            if sent and not force:
                logger.info(
                    "Audience %s (job %s) already delivered to %s: skipped", job.audience_name, job_id, destination.name
                )
                continue
            deliveries.append(self._deliver(job, source, destination, columns))
        return deliveries

    def _job_for_delivery(self, job_id: str, destination: str) -> tuple[AudienceJob, ProfileSource, bool]:
        """The job, its audience's profile source, and whether it already reached ``destination``."""
        mark = self.engine.placeholder
        with self.engine.connect() as conn:
            self._ensure_audience_ledger(conn)
            rows = self._fetchall(
                conn,
                f"SELECT {', '.join('j.' + c for c in _JOB_COLUMNS.split(', '))}, a.source "
                f"FROM ledger_audience_jobs AS j JOIN ledger_audiences AS a "
                f"ON a.id = j.audience_id WHERE j.id = {mark}",
                [job_id],
            )
            if not rows or rows[0][3] != "SUCCEEDED":
                raise PlatformError(f"audience job {job_id} does not exist or did not succeed")
            sent = self._fetchall(
                conn,
                f"SELECT count(*) FROM ledger_deliveries WHERE job_id = {mark} "
                f"AND destination = {mark} AND status = 'success'",
                [job_id, destination],
            )
        return AudienceJob(*rows[0][:8]), ProfileSource.from_config(json.loads(rows[0][8])), sent[0][0] > 0

    def _deliver(
        self, job: AudienceJob, source: ProfileSource, destination: Destination, columns: list[str]
    ) -> Delivery:
        """Stream one job's members to the destination and record the delivery."""
        delivery_id, started = uuid.uuid4().hex, utc_now()
        with self.engine.connect() as conn:
            self._execute(
                conn,
                f"INSERT INTO ledger_deliveries ({_DELIVERY_COLUMNS}) VALUES ({self._marks(13)})",
                [
                    delivery_id,
                    job.id,
                    job.audience_name,
                    destination.name,
                    "running",
                    0,
                    0,
                    0,
                    0,
                    started,
                    None,
                    None,
                    None,
                ],
            )
        selected = ", ".join(["m.ecid", *(f"p.{identifier(name)}" for name in columns)])
        members = (
            f"SELECT {selected} FROM audience_membership AS m LEFT JOIN {identifier(source.table)} AS p "
            f"ON p.ecid = m.ecid WHERE m.job_id = {literal(job.id)} ORDER BY m.ecid"
        )
        try:
            with closing(self.read_batches(members)) as batches:  # closed before the ledger is written
                result = destination.deliver(job.audience_name, job.audience_id, job.id, batches)
        except Exception as exc:
            with self.engine.connect() as conn:
                self._update_ledger(
                    conn, "ledger_deliveries", delivery_id, status="failed", completed=utc_now(), error=str(exc)[:2000]
                )
            raise
        delivery = result.delivery(delivery_id, job, destination.name, started)
        with self.engine.connect() as conn:
            self._update_ledger(
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
        logger.info(
            "Delivered audience %s to %s: %s members", job.audience_name, destination.name, f"{result.members:,}"
        )
        return delivery

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The ledger's deliveries, newest first, optionally to one destination."""
        sql, params = f"SELECT {_DELIVERY_COLUMNS} FROM ledger_deliveries", []
        if destination is not None:
            sql, params = sql + f" WHERE destination = {self.engine.placeholder}", [destination]
        rows = self._read_ledger("ledger_deliveries", sql + " ORDER BY started DESC", params)
        return [Delivery(*row) for row in rows]
