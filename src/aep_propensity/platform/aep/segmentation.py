"""Segmentation (``/data/core/ups``): audiences as segment definitions, evaluated by segment jobs.

Audiences are segment definitions (PQL over XDM paths) got or created by name, and updated when their
rule or description changed; definitions and jobs are read page by page. Evaluating one runs a segment
job polled to ``SUCCEEDED``, its member count from the job's metrics. Only jobs evaluating one of the
project's own audiences count, since a sandbox also lists scheduled jobs over every segment: the
project's audiences are those its small dataset ``aep_propensity_audiences`` records (ingested like
any other, one batch per change, read through its flat view), with the profile source each reads.

Adobe's references: the Segmentation Service API guide
(https://experienceleague.adobe.com/en/docs/experience-platform/segmentation/api/overview), segment
definitions (https://experienceleague.adobe.com/en/docs/experience-platform/segmentation/api/segment-definitions)
and segment jobs (https://experienceleague.adobe.com/en/docs/experience-platform/segmentation/api/segment-jobs).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from ..core.port import (
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    Column,
    DatasetSpec,
    PlatformError,
    ProfileSource,
    latest_successful,
    utc_now,
)
from ..core.pql import compile_pql
from ..core.sql import identifier
from .client import AEPClient, AEPError
from .contract import JOB_DONE, SEGMENT_PAGE, SEGMENTS, from_ms
from .ingestion import BatchIngestion
from .queries import QueryService

logger = logging.getLogger(__name__)

AUDIENCES = DatasetSpec(
    "aep_propensity_audiences",
    (Column("id", "string"), Column("name", "string"), Column("source", "string"), Column("updated", "timestamp")),
)


class Segmentation:
    """Segment definitions and jobs of the project's own audiences, and the dataset recording them."""

    def __init__(self, client: AEPClient, queries: QueryService, ingestion: BatchIngestion) -> None:
        self.client = client
        self.queries = queries
        self.ingestion = ingestion

    # -- the project's own audiences -------------------------------------------------------------

    def _audience_ledger(self) -> dict[str, tuple[str, str]]:
        """The project's own audiences, as its audience dataset records them: id -> (name, latest profile
        source as JSON)."""
        if not self.queries.exists(AUDIENCES.name):
            return {}
        frame = self.queries.query(f"SELECT id, name, source FROM {identifier(AUDIENCES.name)} ORDER BY updated")
        return {ident: (name, source) for ident, name, source in zip(*frame.to_dict("list").values(), strict=True)}

    def audience_sources(self) -> dict[str, str]:
        """The latest recorded profile source (JSON) of each of the project's audience ids."""
        return {ident: source for ident, (_, source) in self._audience_ledger().items()}

    def own_audiences(self) -> dict[str, str]:
        """The project's own segment definitions: id -> name."""
        return {ident: name for ident, (name, _) in self._audience_ledger().items()}

    # -- definitions ------------------------------------------------------------------------------

    def definitions(self) -> list[dict[str, Any]]:
        """Every segment definition of the sandbox, read page by page (``start`` offset and ``limit``) until
        ``page.totalPages`` pages or ``page.totalCount`` definitions are read, or a page brings nothing new."""
        segments: dict[str, dict[str, Any]] = {}
        pages = 0
        while True:
            answer = self.client.get(
                f"{SEGMENTS}/segment/definitions", params={"start": len(segments), "limit": SEGMENT_PAGE}
            )
            known, pages = len(segments), pages + 1
            segments.update((str(item["id"]), item) for item in answer.get("segments") or [])
            page = answer.get("page") or {}
            more = pages < int(page.get("totalPages") or 0) or bool((answer.get("link") or {}).get("next"))
            total = page.get("totalCount")
            if not more or len(segments) == known or (total is not None and len(segments) >= int(total)):
                return list(segments.values())

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the segment definition (PQL over XDM paths), or update it when its rule or description
        changed; a changed profile source is recorded in the audience dataset (and is an update too)."""
        compile_pql(definition.rule, source.fields)  # a bad rule is an error before anything is stored
        existing = next((s for s in self.definitions() if s.get("name") == definition.name), None)
        record = self._upsert_definition(definition, existing)
        if self.audience_sources().get(record.id) != source.to_json():
            row = {"id": record.id, "name": record.name, "source": source.to_json(), "updated": utc_now()}
            self.ingestion.ingest(AUDIENCES, [pd.DataFrame([row])])
            if record.change == "unchanged":
                record = AudienceRecord(record.id, record.name, record.rule, record.version, "updated")
        return record

    def _upsert_definition(self, definition: AudienceDefinition, existing: dict[str, Any] | None) -> AudienceRecord:
        """Create the segment definition, or update its expression and description when they changed."""
        expression = {"type": "PQL", "format": "pql/text", "value": definition.rule}
        if existing is None:
            body = {
                "name": definition.name,
                "profileInstanceId": "ups",
                "description": definition.description,
                "expression": expression,
                "evaluationInfo": {"batch": {"enabled": True}, "continuous": {"enabled": False}},
                "schema": {"name": "_xdm.context.profile"},
                "ttlInDays": 60,
            }
            created = self.client.post(f"{SEGMENTS}/segment/definitions", body)
            return AudienceRecord(created["id"], definition.name, definition.rule, 1, "created")
        version = int(existing.get("version") or 1)
        if (
            existing.get("expression", {}).get("value") == definition.rule
            and (existing.get("description") or "") == definition.description
        ):
            return AudienceRecord(existing["id"], definition.name, definition.rule, version, "unchanged")
        patch = [
            {"op": "replace", "path": "/expression", "value": expression},
            {"op": "replace", "path": "/description", "value": definition.description},
        ]
        updated = self.client.patch(f"{SEGMENTS}/segment/definitions/{existing['id']}", patch) or {}
        return AudienceRecord(
            existing["id"], definition.name, definition.rule, int(updated.get("version") or version + 1), "updated"
        )

    # -- jobs -------------------------------------------------------------------------------------

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Run a segment job for the audience and wait for it; its member count comes from the job's metrics."""
        job = self.client.post(f"{SEGMENTS}/segment/jobs", [{"segmentId": audience_id}])
        done = self.client.poll(
            lambda: self.client.get(f"{SEGMENTS}/segment/jobs/{job['id']}"),
            lambda answer: answer.get("status") in JOB_DONE,
            f"segment job {job['id']}",
        )
        name = self.own_audiences().get(audience_id)
        if name is None:
            name = self.client.get(f"{SEGMENTS}/segment/definitions/{audience_id}").get("name", audience_id)
        record = _job_record(done, {audience_id: name})
        if record is None:
            raise AEPError(f"segment job {job['id']} does not evaluate audience {audience_id}")
        if record.status != "SUCCEEDED":
            raise AEPError(
                f"segment job {record.id} for audience {record.audience_name!r} {record.status}: {record.error}"
            )
        logger.info("Audience %s: %s members (segment job %s)", record.audience_name, f"{record.members:,}", record.id)
        return record

    def segment_jobs(self) -> list[dict[str, Any]]:
        """Every segment job of the sandbox, newest first, page by page (the next page's ``start`` from
        ``_page.next`` or ``_links.next.href``)."""
        jobs: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {"limit": SEGMENT_PAGE, "sort": "creationTime:desc"}
        while True:
            answer = self.client.get(f"{SEGMENTS}/segment/jobs", params=params)
            known = len(jobs)
            jobs.update((str(job["id"]), job) for job in answer.get("children") or [])
            start = _next_start(answer)
            if start is None or len(jobs) == known:
                return list(jobs.values())
            params = {**params, "start": start}

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The segment jobs of the project's own audiences, newest first; by default only each audience's
        latest successful one (jobs of other segments are left out)."""
        names = self.own_audiences()
        records = [record for record in (_job_record(job, names) for job in self.segment_jobs()) if record]
        jobs = sorted(records, key=lambda j: j.started, reverse=True)
        return jobs if not latest_only else latest_successful(jobs)

    def succeeded_jobs(self, job_ids: list[str]) -> list[AudienceJob]:
        """The segment jobs ``job_ids``, each checked to evaluate one of the project's audiences and to
        have succeeded (else a :class:`PlatformError` naming it)."""
        names = self.own_audiences()
        jobs = []
        for job_id in job_ids:
            job = _job_record(self.client.get(f"{SEGMENTS}/segment/jobs/{job_id}"), names)
            if job is None:
                raise PlatformError(f"segment job {job_id} evaluated none of this project's audiences")
            if job.status != "SUCCEEDED":
                raise PlatformError(f"audience job {job_id} did not succeed ({job.status})")
            jobs.append(job)
        return jobs


def _next_start(answer: dict[str, Any]) -> str | None:
    """The ``start`` of a Segmentation list's next page: ``_page.next``, or that of ``_links.next.href``."""
    following = (answer.get("_page") or {}).get("next")
    if following not in (None, ""):
        return str(following)
    href = ((answer.get("_links") or {}).get("next") or {}).get("href")
    values = parse_qs(urlsplit(href).query).get("start") if href else None
    return values[0] if values else None


def _job_record(job: dict[str, Any], names: dict[str, str]) -> AudienceJob | None:
    """A port :class:`AudienceJob` from a segment job, for the first of its segments that is one of
    ``names`` (id -> name: the audiences of interest); None when it evaluates none of them."""
    segment_id = next(
        (str(item.get("segmentId")) for item in job.get("segments") or [] if str(item.get("segmentId")) in names),
        None,
    )
    if segment_id is None:
        return None
    counter = job.get("metrics", {}).get("segmentedProfileCounter", {})
    errors = job.get("errors") or None
    return AudienceJob(
        str(job["id"]),
        segment_id,
        names[segment_id],
        job.get("status", ""),
        int(counter.get(segment_id, 0)),
        from_ms(job.get("creationTime")) or utc_now(),
        from_ms(job.get("updateTime")) if job.get("status") in JOB_DONE else None,
        str(errors)[:2000] if errors else None,
    )
