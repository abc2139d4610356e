"""Activation through destination flows: evaluated audiences delivered to the ``files`` destination.

Every job is checked first (one of the project's audiences, succeeded, its attributes among the
audience's profile fields), then the core's delivery policy chooses which to send. Each chosen job
runs a Data Landing Zone destination flow (profile-store source, the audience's segment selector,
profile selectors for the identity ``_{tenant}.userid`` and each attribute's XDM path, one ad-hoc run;
the flow and its connections deleted afterwards, as an export's). The CSV it writes is read by its
header (XDM path -> flat name), never by position, sorted by ``ecid`` and handed to the configured
``files`` destination under the core's ``delivery_key`` (the segment definition's version, the members
and their attributes: the same for a repeat, whichever segment job found them). AEP keeps no record
naming the audience job a delivery delivered, so each delivery is recorded in the backend's small
dataset ``aep_propensity_deliveries`` (one batch per delivery, read through its flat view).

Activation is bounded as AEP's guardrails for activation bound it, and refused with a clear
:class:`~..core.port.PlatformError` before anything is created: at most ``max_attributes`` (50) mapped
attributes, the identity counted (checked before any request), and at most ``max_audiences`` (250)
audiences to one destination in one call (checked once the jobs are read, before any flow is created).
Only profile record attributes that are scalars can be activated: every attribute must be a field of the
audience's recorded profile source, whose fields are typed number, string, boolean or date
(:class:`~..core.port.Field`), so an array, a map or an event attribute is refused as no such field.

Adobe's references: the guardrails for activation
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/guardrails), activating
audiences to file-based destinations with the Flow Service API
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/api/activate-segments-file-based-destinations)
and the ad-hoc activation API
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/api/ad-hoc-activation-api).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..core.destinations import FileDestination
from ..core.port import (
    AudienceJob,
    Column,
    DatasetSpec,
    Delivery,
    Destination,
    PlatformError,
    ProfileSource,
    check_name,
    delivery_key,
    jobs_to_deliver,
    utc_now,
)
from ..core.sql import identifier, literal
from .client import AEPClient, AEPError
from .contract import ADHOC_RUN, AUDIENCE_ADHOC_ACCEPT, FLOWS, PROFILE_STORE_SPEC, SEGMENTS
from .flows import FlowObjects, dlz_filesystem, dlz_flow, dlz_target_connection, wait_for_run
from .ingestion import BatchIngestion
from .queries import QueryService
from .registry import SchemaRegistry
from .segmentation import Segmentation
from .xdm import identity_path

logger = logging.getLogger(__name__)

#: AEP's guardrails for activation: attributes mapped to a destination, audiences to one destination.
MAX_ATTRIBUTES = 50
MAX_AUDIENCES = 250

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


class Activation:
    """Deliveries of the project's evaluated audiences through DLZ destination flows, and their record."""

    def __init__(
        self,
        client: AEPClient,
        registry: SchemaRegistry,
        segmentation: Segmentation,
        queries: QueryService,
        ingestion: BatchIngestion,
        max_attributes: int = MAX_ATTRIBUTES,
        max_audiences: int = MAX_AUDIENCES,
    ) -> None:
        self.client = client
        self.max_attributes = max_attributes
        self.max_audiences = max_audiences
        self.registry = registry
        self.segmentation = segmentation
        self.queries = queries
        self.ingestion = ingestion

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver each segment job's audience through a DLZ destination flow, then to the ``files`` destination.

        Every job is checked before any is sent (and AEP's bounds of activation, see the module); a job
        already delivered successfully to this destination is skipped unless ``force``.
        """
        if not isinstance(destination, FileDestination):
            raise PlatformError(
                f"destination {destination.name!r}: the aep backend activates only to file destinations (type: files)"
            )
        columns = [check_name(name, "attribute") for name in attributes]
        if len(columns) + 1 > self.max_attributes:
            raise PlatformError(
                f"{len(columns)} attributes and the identity: AEP maps at most {self.max_attributes} attributes "
                f"to a destination (the identity counted); activate {self.max_attributes - 1} or fewer"
            )
        jobs = self.segmentation.succeeded_jobs(job_ids)
        audiences = {job.audience_id for job in jobs}
        if len(audiences) > self.max_audiences:
            raise PlatformError(
                f"{len(audiences)} audiences to destination {destination.name!r}: AEP maps at most "
                f"{self.max_audiences} audiences to one destination; activate them in smaller groups"
            )
        sources = self.segmentation.audience_sources()
        paths = {job.audience_id: _attribute_paths(job.audience_id, sources, columns) for job in jobs}
        chosen = jobs_to_deliver(jobs, destination.name, self.deliveries(destination.name), force)
        return [self._deliver(job, destination, columns, paths[job.audience_id]) for job in chosen]

    def _deliver(
        self, job: AudienceJob, destination: FileDestination, attributes: list[str], paths: list[str]
    ) -> Delivery:
        """One destination flow run for the job's audience (the flow and its connections deleted once the run
        is over), its CSV handed to the destination, recorded. The CSV's columns are found by their header:
        the identity path, then each attribute's XDM path."""
        started, delivery_id = utc_now(), uuid.uuid4().hex
        folder = f"aep-propensity/activation/{destination.name}/{delivery_id}"
        columns, selected = ["ecid", *attributes], [identity_path(self.registry.tenant), *paths]
        try:
            with FlowObjects(self.client) as objects:
                flow_id = self._activation_flow(objects, job, destination.name, folder, selected, started)
                self.client.post(
                    ADHOC_RUN,
                    {"activationInfo": {flow_id: [job.audience_id]}},
                    headers={"Accept": AUDIENCE_ADHOC_ACCEPT},
                )
                wait_for_run(self.client, flow_id, f"activation of {job.audience_name}")
            members = self._delivered_members(folder, columns, selected)
            definition = self.client.get(f"{SEGMENTS}/segment/definitions/{job.audience_id}")
            key = delivery_key(job.audience_id, int(definition.get("version") or 1), members.to_reader())
            result = destination.deliver(job.audience_name, job.audience_id, job.id, key, members.to_reader())
        except Exception as exc:
            nothing = {"members": 0, "files": 0, "requests": 0, "bytes": 0}
            failed = Delivery(
                delivery_id,
                job.id,
                job.audience_name,
                destination.name,
                "failed",
                **nothing,
                started=started,
                completed=utc_now(),
                error=str(exc)[:2000],
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
        self, objects: FlowObjects, job: AudienceJob, destination: str, folder: str, paths: list[str], day: datetime
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
        target = dlz_target_connection(
            objects, f"aep-propensity {destination}", {"path": folder, "fileType": "csv", "compression": "NONE"}
        )
        selectors = {"segmentSelectors": {"selectors": []}, "profileSelectors": {"selectors": []}}
        flow = dlz_flow(
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

    def _delivered_members(self, folder: str, columns: list[str], paths: list[str]) -> pa.Table:
        """The rows of the CSV files the flow run wrote under ``folder``, in ``ecid`` order (AEP promises none):
        the column headed by each XDM path of ``paths``, named by the matching flat name of ``columns``; no
        file is no rows."""
        dlz, root = dlz_filesystem(self.client)
        tables = []
        for path in sorted(dlz.glob(f"{root}/{folder}/*.csv")):
            with dlz.open(path, "rb") as handle:
                table = pacsv.read_csv(handle, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
            tables.append(_by_header(table, columns, paths, path.rsplit("/", 1)[-1]))
        if not tables:
            return pa.table({name: pa.array([], pa.string()) for name in columns})
        return pa.concat_tables(tables, promote_options="default").sort_by("ecid")

    def _record(self, delivery: Delivery) -> None:
        """Append one delivery to the delivery dataset."""
        self.ingestion.ingest(DELIVERIES, [pd.DataFrame([asdict(delivery)])])

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The recorded deliveries, newest first, optionally to one destination."""
        if not self.queries.exists(DELIVERIES.name):
            return []
        sql = f"SELECT * FROM {identifier(DELIVERIES.name)}"
        if destination is not None:
            sql += f" WHERE destination = {literal(destination)}"
        frame = self.queries.query(sql + " ORDER BY started DESC")
        return [
            Delivery(**{k: (None if pd.isna(v) else v) for k, v in row.items()}) for row in frame.to_dict("records")
        ]


def _attribute_paths(audience_id: str, sources: dict[str, str], attributes: list[str]) -> list[str]:
    """The XDM path of each activated attribute (a column of the audience's recorded profile source)."""
    recorded = sources.get(audience_id)
    if recorded is None:
        raise PlatformError(f"audience {audience_id} has no recorded profile source: upsert it first")
    source = ProfileSource.from_config(json.loads(recorded))
    by_column: dict[str, str] = {field.column: path for path, field in source.fields.items()}
    missing = [name for name in attributes if name not in by_column]
    if missing:
        raise PlatformError(f"attributes {missing} are not among the profile fields {sorted(by_column)}")
    return [by_column[name] for name in attributes]


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
