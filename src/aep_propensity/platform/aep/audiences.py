"""Audiences, activation and deliveries on AEP: the :class:`AEPAudiences` mixin of
:class:`~aep_propensity.platform.aep.backend.AEPPlatform`, and the two small datasets it keeps itself.

Audiences are segment definitions (PQL over XDM paths) got or created by name, evaluated by segment
jobs polled to ``SUCCEEDED``; only jobs evaluating one of the project's own audiences (those
``aep_propensity_audiences`` records, with the profile source each reads) count. Activation runs a Data
Landing Zone destination flow (:mod:`.flows`) per job and hands its CSV, its columns found by their
header, to the ``files`` destination; each delivery is recorded in ``aep_propensity_deliveries``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..core.destinations import FileDestination
from ..core.port import (
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    Column,
    DatasetSpec,
    Delivery,
    Destination,
    PlatformError,
    ProfileSource,
    check_name,
    latest_successful,
    utc_now,
)
from ..core.pql import compile_pql
from ..core.sql import identifier, literal
from .client import AEPError
from .contract import (
    ADHOC_RUN,
    AUDIENCE_ADHOC_ACCEPT,
    FLOWS,
    JOB_DONE,
    PROFILE_STORE_SPEC,
    SEGMENT_PAGE,
    SEGMENTS,
    from_ms,
)
from .flows import _dlz_filesystem, _flow, _FlowObjects, _target_connection, _wait_for_run
from .xdm import identity_path

logger = logging.getLogger(__name__)

AUDIENCES = DatasetSpec(
    "aep_propensity_audiences",
    (Column("id", "string"), Column("name", "string"), Column("source", "string"), Column("updated", "timestamp")),
)
DELIVERIES = DatasetSpec(
    "aep_propensity_deliveries",
    tuple(
        Column(name, kind)  # type: ignore[arg-type]
        for name, kind in [
            ("id", "string"),
            ("job_id", "string"),
            ("audience_name", "string"),
            ("destination", "string"),
            ("status", "string"),
            ("members", "int64"),
            ("files", "int64"),
            ("requests", "int64"),
            ("bytes", "int64"),
            ("started", "timestamp"),
            ("completed", "timestamp"),
            ("location", "string"),
            ("error", "string"),
        ]
    ),
)


class AEPAudiences:
    """Audience, activation and delivery operations of :class:`~aep_propensity.platform.aep.backend.AEPPlatform`."""

    def _definitions(self) -> list[dict[str, Any]]:
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

    def _segment_jobs(self) -> list[dict[str, Any]]:
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

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the segment definition (PQL over XDM paths), or update it when its rule or description changed."""
        compile_pql(definition.rule, source.fields)  # a bad rule is an error before anything is stored
        existing = next((s for s in self._definitions() if s.get("name") == definition.name), None)
        record = self._upsert_definition(definition, existing)
        if self._audience_sources().get(record.id) != source.to_json():
            self.ingest(
                AUDIENCES,
                [
                    pd.DataFrame(
                        [{"id": record.id, "name": record.name, "source": source.to_json(), "updated": utc_now()}]
                    )
                ],
            )
            if record.change == "unchanged":
                record = AudienceRecord(record.id, record.name, record.rule, record.version, "updated")
        return record

    def _audience_ledger(self) -> dict[str, tuple[str, str]]:
        """The project's own audiences, as its audience dataset records them: id -> (name, latest profile
        source as JSON)."""
        if not self.exists(AUDIENCES.name):
            return {}
        frame = self.query(f"SELECT id, name, source FROM {identifier(AUDIENCES.name)} ORDER BY updated")
        return {ident: (name, source) for ident, name, source in zip(*frame.to_dict("list").values(), strict=True)}

    def _audience_sources(self) -> dict[str, str]:
        """The latest recorded profile source (JSON) of each of the project's audience ids."""
        return {ident: source for ident, (_, source) in self._audience_ledger().items()}

    def _own_audiences(self) -> dict[str, str]:
        """The project's own segment definitions: id -> name."""
        return {ident: name for ident, (name, _) in self._audience_ledger().items()}

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

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Run a segment job for the audience and wait for it; its member count comes from the job's metrics."""
        job = self.client.post(f"{SEGMENTS}/segment/jobs", [{"segmentId": audience_id}])
        done = self.client.poll(
            lambda: self.client.get(f"{SEGMENTS}/segment/jobs/{job['id']}"),
            lambda answer: answer.get("status") in JOB_DONE,
            f"segment job {job['id']}",
        )
        name = self._own_audiences().get(audience_id)
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

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The segment jobs of the project's own audiences, newest first; by default only each audience's
        latest successful one (a sandbox also lists scheduled jobs over every segment: those of other
        segments are left out)."""
        names = self._own_audiences()
        records = [record for record in (_job_record(job, names) for job in self._segment_jobs()) if record]
        jobs = sorted(records, key=lambda j: j.started, reverse=True)
        return jobs if not latest_only else latest_successful(jobs)

    # -- activation ----------------------------------------------------------------------------

    def _attribute_paths(self, audience_id: str, attributes: list[str]) -> list[str]:
        """The XDM path of each activated attribute (a column of the audience's profile source)."""
        recorded = self._audience_sources().get(audience_id)
        if recorded is None:
            raise PlatformError(f"audience {audience_id} has no recorded profile source: upsert it first")
        source = ProfileSource.from_config(json.loads(recorded))
        by_column: dict[str, str] = {field.column: path for path, field in source.fields.items()}
        missing = [name for name in attributes if name not in by_column]
        if missing:
            raise PlatformError(f"attributes {missing} are not among the profile fields {sorted(by_column)}")
        return [by_column[name] for name in attributes]

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver each segment job's audience through a DLZ destination flow, then to the ``files`` destination.

        A job already delivered successfully to this destination is skipped unless ``force``.
        """
        if not isinstance(destination, FileDestination):
            raise PlatformError(
                f"destination {destination.name!r}: the aep backend activates only to file destinations (type: files)"
            )
        columns = [check_name(name, "attribute") for name in attributes]
        sent = {d.job_id for d in self.deliveries(destination.name) if d.status == "success"}
        names = self._own_audiences()
        deliveries = []
        for job_id in job_ids:
            job = _job_record(self.client.get(f"{SEGMENTS}/segment/jobs/{job_id}"), names)
            if job is None:
                raise PlatformError(f"segment job {job_id} evaluated none of this project's audiences")
            if job.status != "SUCCEEDED":
                raise PlatformError(f"audience job {job_id} did not succeed ({job.status})")
            if job_id in sent and not force:
                logger.info(
                    "Audience %s (job %s) already delivered to %s: skipped", job.audience_name, job_id, destination.name
                )
                continue
            deliveries.append(self._deliver(job, destination, columns, self._attribute_paths(job.audience_id, columns)))
        return deliveries

    def _deliver(
        self, job: AudienceJob, destination: FileDestination, attributes: list[str], paths: list[str]
    ) -> Delivery:
        """One destination flow run for the job's audience (the flow and its connections deleted once the run
        is over), its CSV handed to the destination, recorded. The CSV's columns are found by their header:
        the identity path, then each attribute's XDM path."""
        started, delivery_id = utc_now(), uuid.uuid4().hex
        folder = f"aep-propensity/activation/{destination.name}/{delivery_id}"
        columns, selected = ["ecid", *attributes], [identity_path(self.tenant), *paths]
        try:
            with _FlowObjects(self.client) as objects:
                flow_id = self._activation_flow(objects, job, destination.name, folder, selected, started)
                self.client.post(
                    ADHOC_RUN,
                    {"activationInfo": {flow_id: [job.audience_id]}},
                    headers={"Accept": AUDIENCE_ADHOC_ACCEPT},
                )
                _wait_for_run(self.client, flow_id, f"activation of {job.audience_name}")
            rows = self._delivered_rows(folder, columns, selected)
            result = destination.deliver(job.audience_name, job.audience_id, job.id, rows)
        except Exception as exc:
            failed = Delivery(
                delivery_id,
                job.id,
                job.audience_name,
                destination.name,
                "failed",
                0,
                0,
                0,
                0,
                started,
                utc_now(),
                None,
                str(exc)[:2000],
            )
            self._record(failed)
            raise
        delivery = result.delivery(delivery_id, job, destination.name, started)
        self._record(delivery)
        logger.info(
            "Delivered audience %s to %s: %s members", job.audience_name, destination.name, f"{result.members:,}"
        )
        return delivery

    def _activation_flow(
        self, objects: _FlowObjects, job: AudienceJob, destination: str, folder: str, paths: list[str], day: datetime
    ) -> str:
        """A DLZ destination flow from the profile store, mapping the job's audience and selecting ``paths``
        (the identity first) as CSV columns under ``folder``; its id."""
        source = objects.create(
            "sourceConnections",
            {
                "name": "aep-propensity profile store",
                "connectionSpec": {"id": PROFILE_STORE_SPEC, "version": "1.0"},
                "data": {"format": "CSV", "schema": None},
                "params": {},
            },
        )["id"]
        target = _target_connection(
            objects, f"aep-propensity {destination}", {"path": folder, "fileType": "csv", "compression": "NONE"}
        )
        selectors = {"segmentSelectors": {"selectors": []}, "profileSelectors": {"selectors": []}}
        flow = _flow(
            objects,
            f"aep-propensity activation {destination}",
            source,
            target,
            [{"name": "GeneralTransform", "params": selectors}],
        )
        self.client.patch(
            f"{FLOWS}/flows/{flow['id']}", _selectors_patch(job, paths, day), headers={"If-Match": flow["etag"]}
        )
        return str(flow["id"])

    def _delivered_rows(self, folder: str, columns: list[str], paths: list[str]) -> Iterator[pa.RecordBatch]:
        """The rows of the CSV files the flow run wrote under ``folder``: the column headed by each XDM path
        of ``paths``, named by the matching flat name of ``columns``."""
        dlz, root = _dlz_filesystem(self.client)
        for path in sorted(dlz.glob(f"{root}/{folder}/*.csv")):
            with dlz.open(path, "rb") as handle:
                table = pacsv.read_csv(handle, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
            yield from _by_header(table, columns, paths, path.rsplit("/", 1)[-1]).to_batches()

    def _record(self, delivery: Delivery) -> None:
        """Append one delivery to the backend's delivery ledger dataset."""
        self.ingest(DELIVERIES, [pd.DataFrame([asdict(delivery)])])

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The recorded deliveries, newest first, optionally to one destination."""
        if not self.exists(DELIVERIES.name):
            return []
        sql = f"SELECT * FROM {identifier(DELIVERIES.name)}"
        if destination is not None:
            sql += f" WHERE destination = {literal(destination)}"
        frame = self.query(sql + " ORDER BY started DESC")
        return [
            Delivery(**{k: (None if pd.isna(v) else v) for k, v in row.items()}) for row in frame.to_dict("records")
        ]


def _selectors_patch(job: AudienceJob, paths: list[str], day: datetime) -> list[dict[str, Any]]:
    """The JSON Patch mapping the job's audience to a destination flow (a one-off full export on ``day``)
    and selecting the profile ``paths``."""
    segment = {
        "type": "PLATFORM_SEGMENT",
        "value": {
            "id": job.audience_id,
            "name": job.audience_name,
            "filenameTemplate": "%DESTINATION_NAME%_%SEGMENT_ID%_%DATETIME(YYYYMMdd_HHmmss)%",
            "exportMode": "DAILY_FULL_EXPORT",
            "schedule": {"frequency": "ONCE", "triggerType": "SCHEDULED", "startDate": day.date().isoformat()},
        },
    }
    return [
        {"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-", "value": segment},
        *(
            {
                "op": "add",
                "path": "/transformations/0/params/profileSelectors/selectors/-",
                "value": {"type": "JSON_PATH", "value": {"path": path}},
            }
            for path in paths
        ),
    ]


def _by_header(table: pa.Table, columns: list[str], paths: list[str], file: str) -> pa.Table:
    """An activated file's columns picked by their header (each XDM path of ``paths``, the first column of
    that name) and named by ``columns``; a missing one is an :class:`AEPError` naming it."""
    header = table.column_names
    missing = [f"{path} ({column})" for column, path in zip(columns, paths, strict=True) if path not in header]
    if missing:
        raise AEPError(f"activation file {file} has no column {', '.join(missing)}; its header is {header}")
    return pa.Table.from_arrays([table.column(header.index(path)) for path in paths], names=columns)


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
