"""Activation on the local platform (AEP's destinations role): evaluated audiences streamed to destinations.

A job's members (``ecid`` plus chosen attributes of the audience's profile source) go to a
destination as record batches; every delivery is recorded in the ledger, and the core's delivery
policy decides which jobs to send.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextlib import closing

from ..core.port import (
    AudienceJob,
    Delivery,
    Destination,
    PlatformError,
    ProfileSource,
    check_name,
    jobs_to_deliver,
    utc_now,
)
from ..core.sql import identifier, literal
from .engines import Engine, stream_rows
from .ledger import AUDIENCE_DDL, Ledger
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
        evaluated = [self._succeeded_job(job_id) for job_id in job_ids]
        sources = {job.id: source for job, source in evaluated}
        chosen = jobs_to_deliver(
            [job for job, _ in evaluated], destination.name, self.deliveries(destination.name), force
        )
        return [self._deliver(job, sources[job.id], destination, columns) for job in chosen]

    def _succeeded_job(self, job_id: str) -> tuple[AudienceJob, ProfileSource]:
        """The successful audience job ``job_id`` and its audience's profile source."""
        if not _HEX_ID.match(job_id):
            raise PlatformError(f"not an audience job id: {job_id!r}")
        with self.engine.connect() as conn:
            self.ledger.ensure(conn, AUDIENCE_DDL)
            rows = self.ledger.fetchall(
                conn,
                f"SELECT {', '.join('j.' + c for c in JOB_COLUMNS.split(', '))}, a.source "
                f"FROM ledger_audience_jobs AS j JOIN ledger_audiences AS a "
                f"ON a.id = j.audience_id WHERE j.id = {self.engine.placeholder}",
                [job_id],
            )
        if not rows or rows[0][3] != "SUCCEEDED":
            raise PlatformError(f"audience job {job_id} does not exist or did not succeed")
        return AudienceJob(*rows[0][:8]), ProfileSource.from_config(json.loads(rows[0][8]))

    def _deliver(
        self, job: AudienceJob, source: ProfileSource, destination: Destination, columns: list[str]
    ) -> Delivery:
        """Stream one job's members to the destination and record the delivery."""
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
            with closing(stream_rows(self.engine, members)) as batches:  # closed before the ledger is written
                result = destination.deliver(job.audience_name, job.audience_id, job.id, batches)
        except Exception as exc:
            with self.engine.connect() as conn:
                self.ledger.update(
                    conn, "ledger_deliveries", delivery_id, status="failed", completed=utc_now(), error=str(exc)[:2000]
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

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The ledger's deliveries, newest first, optionally to one destination."""
        sql, params = f"SELECT {DELIVERY_COLUMNS} FROM ledger_deliveries", []
        if destination is not None:
            sql, params = sql + f" WHERE destination = {self.engine.placeholder}", [destination]
        rows = self.ledger.read("ledger_deliveries", sql + " ORDER BY started DESC", params)
        return [Delivery(*row) for row in rows]
