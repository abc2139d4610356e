"""Activation on the local platform (AEP's destinations role): evaluated audiences streamed to destinations.

A job's members (``ecid`` plus chosen attributes of the audience's profile source, in ``ecid`` order)
go to a destination as record batches under a delivery key read from them first (the core's
``delivery_key``: the same for the same audience version, members and attributes); every delivery is
recorded in the ledger, failed if it raised or was interrupted, and the core's delivery policy decides
which jobs to send.
"""

from __future__ import annotations

import logging
from contextlib import closing

import pyarrow as pa

from ..core.ledger import Ledger
from ..core.port import (
    AudienceJob,
    Delivery,
    Destination,
    ProfileSource,
    check_name,
    delivery_key,
)
from ..core.sql import identifier, literal, transpile
from .engines import Engine, stream_rows

logger = logging.getLogger(__name__)


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
        chosen = self.ledger.jobs_to_send(job_ids, destination.name, force)
        return [self._deliver(job, source, version, destination, columns) for job, source, version in chosen]

    def _deliver(
        self, job: AudienceJob, source: ProfileSource, version: int, destination: Destination, columns: list[str]
    ) -> Delivery:
        """Stream one job's members to the destination and record the delivery (failed on any error or
        interrupt, so that none stays ``running``)."""
        delivery_id, started = self.ledger.start_delivery(job, destination.name)
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
            self.ledger.fail_delivery(delivery_id, exc)
            raise
        delivery = self.ledger.finish_delivery(delivery_id, job, destination.name, started, result)
        logger.info(
            "Delivered audience %s to %s: %s members", job.audience_name, destination.name, f"{result.members:,}"
        )
        return delivery

    def _schema(self, sql: str) -> pa.Schema:
        """The columns of a canonical-dialect query's result (its stream may have no batch to show them)."""
        empty = transpile(f"SELECT * FROM ({sql}) AS q LIMIT 0", self.engine.dialect)
        with self.engine.connect(read_only=True) as conn:
            return self.engine.fetch_arrow(conn, empty, 1).schema
