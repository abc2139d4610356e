"""Audiences on the local platform (AEP's Segmentation Service role).

Audiences are upserted by name into the ledger with their PQL rule and the profile source they
read (a table and the mapping of PQL paths to its columns). Evaluating one compiles the rule to a
SQL predicate with bound parameters, materialises the members in ``audience_membership`` and
records the job like AEP's segment jobs.
"""

from __future__ import annotations

import json
import logging
import uuid

from ..core.ledger import AUDIENCE_DDL, Ledger
from ..core.port import (
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    PlatformError,
    ProfileSource,
    latest_successful,
    utc_now,
)
from ..core.pql import compile_pql
from ..core.sql import identifier, transpile
from .engines import Engine

logger = logging.getLogger(__name__)

JOB_COLUMNS = "id, audience_id, audience_name, status, members, started, completed, error"
_AUDIENCE_COLUMNS = "id, name, description, rule, source, version, created, updated"


class LocalSegmentation:
    """Audience definitions, their evaluation into ``audience_membership``, and their jobs."""

    def __init__(self, engine: Engine, ledger: Ledger) -> None:
        self.engine = engine
        self.ledger = ledger

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, update it when its rule, description or source changed, else leave it."""
        compile_pql(definition.rule, source.fields)  # a bad rule is an error before anything is stored
        now, mark = utc_now(), self.engine.placeholder
        with self.engine.connect() as conn:
            self.ledger.ensure(conn, AUDIENCE_DDL)
            rows = self.ledger.fetchall(
                conn,
                f"SELECT id, description, rule, source, version FROM ledger_audiences WHERE name = {mark}",
                [definition.name],
            )
            if not rows:
                audience_id = uuid.uuid4().hex
                self.ledger.insert(
                    conn,
                    "ledger_audiences",
                    _AUDIENCE_COLUMNS,
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
            self.ledger.execute(
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
            self.ledger.ensure(conn, AUDIENCE_DDL)
            rows = self.ledger.fetchall(
                conn, f"SELECT name, rule, source FROM ledger_audiences WHERE id = {mark}", [audience_id]
            )
            if not rows:
                raise PlatformError(f"no audience with id {audience_id!r}")
            name, rule, source_json = rows[0]
            job_id, started = uuid.uuid4().hex, utc_now()
            self.ledger.insert(
                conn,
                "ledger_audience_jobs",
                JOB_COLUMNS,
                [job_id, audience_id, name, "PROCESSING", 0, started, None, None],
            )
        source = ProfileSource.from_config(json.loads(source_json))
        compiled = compile_pql(rule, source.fields)
        insert = transpile(
            f"INSERT INTO audience_membership SELECT ?, ?, ?, ecid, ? FROM {identifier(source.table)} "
            f"WHERE {compiled.predicate}",
            self.engine.dialect,
        )
        try:
            with self.engine.connect() as conn:
                self.ledger.execute(conn, f"DELETE FROM audience_membership WHERE audience_id = {mark}", [audience_id])
                self.ledger.execute(conn, insert, [audience_id, name, job_id, started, *compiled.params])
                members = int(
                    self.ledger.fetchall(
                        conn, f"SELECT count(*) FROM audience_membership WHERE job_id = {mark}", [job_id]
                    )[0][0]
                )
                self.ledger.update(
                    conn, "ledger_audience_jobs", job_id, status="SUCCEEDED", members=members, completed=utc_now()
                )
        except Exception as exc:
            with self.engine.connect() as conn:
                self.ledger.update(
                    conn, "ledger_audience_jobs", job_id, status="FAILED", completed=utc_now(), error=str(exc)[:2000]
                )
            raise PlatformError(f"evaluating audience {name!r} failed: {exc}") from exc
        logger.info("Audience %s: %s members", name, f"{members:,}")
        return AudienceJob(job_id, audience_id, name, "SUCCEEDED", members, started, utc_now())

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The audience jobs, newest first; by default only each audience's latest successful one."""
        rows = self.ledger.read(
            "ledger_audience_jobs", f"SELECT {JOB_COLUMNS} FROM ledger_audience_jobs ORDER BY started DESC"
        )
        jobs = [AudienceJob(*row) for row in rows]
        return jobs if not latest_only else latest_successful(jobs)
