"""Activation on the local platform (AEP's destinations role): evaluated audiences streamed to destinations.

A job's members (``ecid`` plus chosen attributes of the audience's profile source, in ``ecid`` order)
go to a destination as record batches under a delivery key read from them first (the core's
``delivery_key``: the same for the same audience version, members and attributes); every delivery is
recorded in the ledger, failed if it raised or was interrupted, and the core's delivery policy decides
which jobs to send.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextlib import closing

import pyarrow as pa

from ..core.ledger import AUDIENCE_DDL, Ledger, error_text
from ..core.port import (
    AudienceJob,
    Delivery,
    Destination,
    PlatformError,
    ProfileSource,
    check_name,
    delivery_key,
    jobs_to_deliver,
    utc_now,
)
from ..core.sql import identifier, literal, transpile
from .engines import Engine, stream_rows
from .segmentation import JOB_COLUMNS

logger = logging.getLogger(__name__)

DELIVERY_COLUMNS = (
    "id, job_id, audience_name, destination, status, members, files, requests, bytes, started, "
    "completed, location, error"
)
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


class LocalActivation:
    """Deliveries of evaluated audiences to destinations, and their ledger."""

    def __init__(self, engine: Engine, ledger: Ledger) -> None:
        self.engine = engine
        self.ledger = ledger

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver each job's members (ecid plus ``attributes`` of the audience's source) to ``destination``.

        Every job is checked before any is sent; a job already delivered successfully to this
        destination is skipped unless ``force``.
        """
        columns = [check_name(name, "attribute") for name in attributes]
        evaluated = {job.id: (job, source, version) for job, source, version in map(self._succeeded_job, job_ids)}
        chosen = jobs_to_deliver(
            [job for job, _, _ in evaluated.values()], destination.name, self.deliveries(destination.name), force
        )
        return [self._deliver(*evaluated[job.id], destination, columns) for job in chosen]

    def _succeeded_job(self, job_id: str) -> tuple[AudienceJob, ProfileSource, int]:
        """The successful audience job ``job_id``, its audience's profile source and version."""
        if not _HEX_ID.match(job_id):
            raise PlatformError(f"not an audience job id: {job_id!r}")
        with self.engine.connect() as conn:
            self.ledger.ensure(conn, AUDIENCE_DDL)
            rows = self.ledger.fetchall(
                conn,
                f"SELECT {', '.join('j.' + c for c in JOB_COLUMNS.split(', '))}, a.source, a.version "
                f"FROM ledger_audience_jobs AS j JOIN ledger_audiences AS a "
                f"ON a.id = j.audience_id WHERE j.id = {self.engine.placeholder}",
                [job_id],
            )
        if not rows or rows[0][3] != "SUCCEEDED":
            raise PlatformError(f"audience job {job_id} does not exist or did not succeed")
        return AudienceJob(*rows[0][:8]), ProfileSource.from_config(json.loads(rows[0][8])), int(rows[0][9])

    def _deliver(
        self, job: AudienceJob, source: ProfileSource, version: int, destination: Destination, columns: list[str]
    ) -> Delivery:
        """Stream one job's members to the destination and record the delivery (failed on any error or
        interrupt, so that none stays ``running``)."""
        delivery_id, started = uuid.uuid4().hex, utc_now()
        with self.engine.connect() as conn:
            self.ledger.insert(
                conn,
                "ledger_deliveries",
                DELIVERY_COLUMNS,
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
            schema = self._schema(members)
            with closing(stream_rows(self.engine, members)) as batches:  # closed before the next read
                key = delivery_key(job.audience_id, version, pa.RecordBatchReader.from_batches(schema, batches))
            with closing(stream_rows(self.engine, members)) as batches:  # closed before the ledger is written
                reader = pa.RecordBatchReader.from_batches(schema, batches)
                result = destination.deliver(job.audience_name, job.audience_id, job.id, key, reader)
        except BaseException as exc:  # an interrupt too: the delivery is over, and failed
            with self.engine.connect() as conn:
                self.ledger.update(
                    conn, "ledger_deliveries", delivery_id, status="failed", completed=utc_now(), error=error_text(exc)
                )
            raise
        delivery = result.delivery(delivery_id, job, destination.name, started)
        with self.engine.connect() as conn:
            self.ledger.update(
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

    def _schema(self, sql: str) -> pa.Schema:
        """The columns of a canonical-dialect query's result (its stream may have no batch to show them)."""
        empty = transpile(f"SELECT * FROM ({sql}) AS q LIMIT 0", self.engine.dialect)
        with self.engine.connect(read_only=True) as conn:
            return self.engine.fetch_arrow(conn, empty, 1).schema

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The ledger's deliveries, newest first, optionally to one destination."""
        sql, params = f"SELECT {DELIVERY_COLUMNS} FROM ledger_deliveries", []
        if destination is not None:
            sql, params = sql + f" WHERE destination = {self.engine.placeholder}", [destination]
        rows = self.ledger.read("ledger_deliveries", sql + " ORDER BY started DESC", params)
        return [Delivery(*row) for row in rows]
