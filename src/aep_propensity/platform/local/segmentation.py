"""Audiences on the local platform (AEP's Segmentation Service role).

Audiences are upserted by name into the ledger with their PQL rule and the profile source they
read (a table and the mapping of PQL paths to its columns). Evaluating one compiles the rule to a
SQL predicate with bound parameters, materialises the members in ``audience_membership`` and
records the job like AEP's segment jobs.
"""

from __future__ import annotations

import logging

from ..core.ledger import MEMBERSHIP_DDL, Ledger
from ..core.port import AudienceDefinition, AudienceJob, AudienceRecord, PlatformError, ProfileSource
from ..core.pql import compile_pql
from ..core.sql import identifier, transpile
from .engines import Engine

logger = logging.getLogger(__name__)


class LocalSegmentation:
    """Audience definitions, their evaluation into ``audience_membership``, and their jobs."""

    def __init__(self, engine: Engine, ledger: Ledger) -> None:
        self.engine = engine
        self.ledger = ledger

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, update it when its rule, description or source changed, else leave it."""
        compile_pql(definition.rule, source.fields)  # a bad rule is an error before anything is stored
        return self.ledger.upsert_audience(definition, source)

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Evaluate the audience now: its members replace the previous ones in ``audience_membership``."""
        mark = self.engine.placeholder
        job, rule, source = self.ledger.start_audience_job(audience_id)
        compiled = compile_pql(rule, source.fields)
        insert = transpile(
            f"INSERT INTO audience_membership SELECT ?, ?, ?, ecid, ? FROM {identifier(source.table)} "
            f"WHERE {compiled.predicate}",
            self.engine.dialect,
        )
        try:
            with self.engine.connect() as conn:
                self.ledger.ensure(conn, MEMBERSHIP_DDL)
                self.ledger.execute(conn, f"DELETE FROM audience_membership WHERE audience_id = {mark}", [audience_id])
                self.ledger.execute(
                    conn, insert, [audience_id, job.audience_name, job.id, job.started, *compiled.params]
                )
                members = int(
                    self.ledger.fetchall(
                        conn, f"SELECT count(*) FROM audience_membership WHERE job_id = {mark}", [job.id]
                    )[0][0]
                )
                done = self.ledger.finish_audience_job(conn, job, members)
        except Exception as exc:
            self.ledger.fail_audience_job(job, exc)
            raise PlatformError(f"evaluating audience {job.audience_name!r} failed: {exc}") from exc
        logger.info("Audience %s: %s members", job.audience_name, f"{members:,}")
        return done
