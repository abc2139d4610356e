"""Audiences and their activation on the spark backend (AEP's Segmentation Service and destinations roles).

An audience's rule is PQL compiled to a Spark SQL predicate with bound parameters; evaluating it
writes its members as one folder of ``audience_membership`` (``a-<audience id>-<job id>``), which
replaces the audience's previous folder in the same SQLite transaction that marks the job
succeeded. Activation has Spark select a job's members with the chosen attributes, in ``ecid``
order, once; the destination reads them from that scratch copy, under the core's delivery key.
"""

from __future__ import annotations

import logging

import pyarrow as pa
from pyspark.sql import types as T

from ..core.ledger import Ledger
from ..core.port import (
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    Delivery,
    Destination,
    PlatformError,
    ProfileSource,
    check_name,
    delivery_key,
)
from ..core.pql import compile_pql
from ..core.sql import identifier, literal
from .tables import SparkTables

logger = logging.getLogger(__name__)

MEMBERSHIP = "audience_membership"
MEMBERSHIP_SCHEMA = T.StructType(
    [
        T.StructField("audience_id", T.StringType(), True),
        T.StructField("audience_name", T.StringType(), True),
        T.StructField("job_id", T.StringType(), True),
        T.StructField("ecid", T.StringType(), True),
        T.StructField("evaluated_at", T.TimestampType(), True),
    ]
)


class SparkAudiences:
    """Audience definitions, their evaluation into ``audience_membership``, and their delivery."""

    def __init__(self, tables: SparkTables, ledger: Ledger) -> None:
        self.tables = tables
        self.store = tables.store
        self.ledger = ledger

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, update it when its rule, description or source changed, else leave it."""
        compile_pql(definition.rule, source.fields)  # a bad rule is an error before anything is stored
        return self.ledger.upsert_audience(definition, source)

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Evaluate the audience now: its members replace its previous ones in ``audience_membership``."""
        job, rule, source = self.ledger.start_audience_job(audience_id)
        compiled = compile_pql(rule, source.fields)
        part = self.store.new_part(MEMBERSHIP, "a", f"{audience_id}-{job.id}")
        try:
            with self.store.hold(job.id):
                members = self.tables.sql(
                    f"SELECT CAST(? AS TEXT) AS audience_id, CAST(? AS TEXT) AS audience_name, "
                    f"CAST(? AS TEXT) AS job_id, CAST(ecid AS TEXT) AS ecid, CAST(? AS TIMESTAMP) AS evaluated_at "
                    f"FROM {identifier(source.table)} WHERE {compiled.predicate}",
                    [audience_id, job.audience_name, job.id, job.started, *compiled.params],
                )
                count = self.tables.write(members, part)
                with self.ledger.engine.connect() as conn:
                    self.store.ensure(conn)
                    entry = self.store.entry(conn, MEMBERSHIP)
                    stale = f"tables/{MEMBERSHIP}/a-{audience_id}-"
                    parts = [p for p in (entry[2] if entry else []) if not p.startswith(stale)] + [part]
                    rows = self.tables.frame(MEMBERSHIP_SCHEMA.json(), parts).count()
                    self.store.commit_table(conn, MEMBERSHIP, MEMBERSHIP_SCHEMA.json(), parts, rows)
                    done = self.ledger.finish_audience_job(conn, job, count)
        except Exception as exc:
            self.ledger.fail_audience_job(job, exc)
            raise PlatformError(f"evaluating audience {job.audience_name!r} failed: {exc}") from exc
        logger.info("Audience %s: %s members", job.audience_name, f"{count:,}")
        return done

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver each job's members (ecid plus ``attributes`` of the audience's source) to ``destination``;
        every job is checked before any is sent, and one already delivered there is skipped unless ``force``."""
        columns = [check_name(name, "attribute") for name in attributes]
        chosen = self.ledger.jobs_to_send(job_ids, destination.name, force)
        return [self._deliver(job, source, version, destination, columns) for job, source, version in chosen]

    def _deliver(
        self, job: AudienceJob, source: ProfileSource, version: int, destination: Destination, columns: list[str]
    ) -> Delivery:
        """Send one job's members and record the delivery (failed on any error or interrupt)."""
        delivery_id, started = self.ledger.start_delivery(job, destination.name)
        selected = ", ".join(["m.ecid", *(f"p.{identifier(name)}" for name in columns)])
        try:
            frame = self.tables.sql(
                f"SELECT {selected} FROM audience_membership AS m LEFT JOIN {identifier(source.table)} AS p "
                f"ON p.ecid = m.ecid WHERE m.job_id = {literal(job.id)} ORDER BY m.ecid"
            )
            schema = self.tables.schema_of(frame)
            with self.tables.scratch(frame) as read:
                key = delivery_key(job.audience_id, version, pa.RecordBatchReader.from_batches(schema, read(131_072)))
                reader = pa.RecordBatchReader.from_batches(schema, read(131_072))
                result = destination.deliver(job.audience_name, job.audience_id, job.id, key, reader)
        except BaseException as exc:  # an interrupt too: the delivery is over, and failed
            self.ledger.fail_delivery(delivery_id, exc)
            raise
        delivery = self.ledger.finish_delivery(delivery_id, job, destination.name, started, result)
        logger.info(
            "Delivered audience %s to %s: %s members", job.audience_name, destination.name, f"{result.members:,}"
        )
        return delivery
