"""Segmentation (``/data/core/ups``): segment definitions, segment jobs and profile export jobs.

The union profile merges every profile-enabled dataset of the profile class by its primary
identity: per identity and attribute, the value of the latest successful batch that has one wins.
A segment job evaluates each segment's PQL (compiled by :func:`aep_propensity.platform.pql.compile_pql`)
over that union and keeps its members in ``emu_segment_members``; an export job writes the members'
attributes into a dataset as a new batch, where the Query Service reads them.
"""

from __future__ import annotations

import math
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response

from aep_propensity.platform.core.port import Column, check_name
from aep_propensity.platform.core.pql import Field, PqlError, compile_pql, parse_pql
from aep_propensity.platform.core.sql import identifier

from .catalog import dataset_columns, dataset_or_404, table_of
from .errors import bad_request, message_of
from .registry import find, primary_identity
from .service import (
    Emulator,
    EmulatorDep,
    JsonBody,
    JsonObject,
    apply_json_patch,
    now_ms,
    offset_page,
    sandbox_of,
)
from .xdm_schema import PROFILE_CLASS, column_name

router = APIRouter(prefix="/data/core/ups")

_INVALID = "UPS-1400-400"
_NOT_FOUND = "UPS-1404-404"
IDENTITY = "_emu_identity"
_PQL_TYPES = {"float64": "number", "int64": "number", "string": "string", "bool": "boolean", "date": "date"}
_UNFINISHED = ("NEW", "QUEUED", "PROCESSING")
RESTARTED = "the emulator restarted while this job was running; run it again"


@dataclass(frozen=True)
class UnionProfile:
    """The union profile as SQL (one row per identity) with its PQL paths and the identity's path."""

    sql: str
    paths: dict[str, Column]
    identity_path: str


def _profile_enabled(dataset: dict[str, Any]) -> bool:
    """Whether a dataset carries the ``unifiedProfile`` enabled tag."""
    values = (dataset.get("tags") or {}).get("unifiedProfile") or []
    return any(value.replace(" ", "") == "enabled:true" for value in values)


def union_profile(emu: Emulator) -> UnionProfile:
    """The union of the profile-enabled profile-class datasets, latest batch winning per attribute."""
    sources: list[tuple[str, str, list[Column]]] = []
    paths: dict[str, Column] = {}
    identity_path = ""
    for dataset in emu.store.all("datasets"):
        schema_id = (dataset.get("schemaRef") or {}).get("id")
        if not schema_id or not _profile_enabled(dataset):
            continue
        schema = find(emu, "schemas", schema_id)
        identity = primary_identity(emu, schema_id)
        if schema.get("meta:class") != PROFILE_CLASS or identity is None:
            continue
        leaves, columns = dataset_columns(emu, dataset)
        identity_path = identity_path or identity[0]
        typed = {column.name: column for column in columns}
        for path in leaves:
            paths.setdefault(path, typed[column_name(path)])
        sources.append((table_of(dataset), column_name(identity[0]), [typed[column_name(p)] for p in leaves]))
    if not sources:
        raise bad_request("no profile-enabled dataset of the profile class with a primary identity", "UPS", _INVALID)
    return UnionProfile(_union_sql(emu, sources, list(paths.values())), paths, identity_path)


def _union_sql(emu: Emulator, sources: list[tuple[str, str, list[Column]]], columns: list[Column]) -> str:
    """SQL merging the sources by identity; each attribute from the latest batch that sets it."""
    batches = (
        f"(SELECT id, (body->>'completed')::bigint AS seq FROM {emu.store.table('emu_objects')} "
        "WHERE kind = 'batches' AND body->>'status' = 'success') AS b"
    )
    parts = []
    for table, identity_column, own in sources:
        names = {column.name for column in own}
        selected = [
            f"t.{identifier(c.name)}"
            if c.name in names
            else f"CAST(NULL AS {emu.engine.sql_type(c)}) AS {identifier(c.name)}"
            for c in columns
        ]
        parts.append(
            f"SELECT t.{identifier(identity_column)} AS {IDENTITY}, {', '.join(selected)}, b.seq AS _emu_seq "
            f"FROM {identifier(table)} AS t JOIN {batches} ON b.id = t._emu_batch "
            f"WHERE t.{identifier(identity_column)} IS NOT NULL"
        )
    merged = [
        f"(array_agg({identifier(c.name)} ORDER BY _emu_seq DESC) "
        f"FILTER (WHERE {identifier(c.name)} IS NOT NULL))[1] AS {identifier(c.name)}"
        for c in columns
    ]
    return f"SELECT {IDENTITY}, {', '.join(merged)} FROM ({' UNION ALL '.join(parts)}) AS u GROUP BY {IDENTITY}"


def compile_segment(profile: UnionProfile, rule: str) -> tuple[str, tuple]:
    """A segment's PQL as a PostgreSQL predicate (``%s`` placeholders) over the union profile."""
    fields = {path: Field(c.name, _PQL_TYPES[c.type]) for path, c in profile.paths.items() if c.type in _PQL_TYPES}
    compiled = compile_pql(rule, fields)
    return compiled.predicate.replace("?", "%s"), compiled.params


# -- segment definitions ------------------------------------------------------------------------


def segment_or_404(emu: Emulator, segment_id: str) -> dict[str, Any]:
    """A segment definition by id, or Segmentation's 404 problem document."""
    return emu.store.get_or_404("segments", segment_id, "segment definition", "UPS", _NOT_FOUND)


def _sandbox(name: str) -> dict[str, Any]:
    """The ``sandbox`` object Segmentation answers with."""
    return {"sandboxId": name, "sandboxName": name, "type": "development", "default": name == "prod"}


@router.post("/segment/definitions")
def create_segment(request: Request, body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Create a segment definition with a PQL expression (syntax checked here, fields at evaluation)."""
    expression = body.get("expression") or {}
    if not body.get("name") or not body.get("schema") or not expression.get("value"):
        raise bad_request("a segment definition needs name, schema and expression.value", "UPS", _INVALID)
    if expression.get("type", "PQL") != "PQL":
        raise bad_request("only PQL expressions are supported", "UPS", _INVALID)
    try:
        parse_pql(expression["value"])
    except PqlError as exc:
        raise bad_request(f"invalid PQL: {exc}", "UPS", _INVALID) from None
    segment = dict(body)
    now = now_ms()
    segment.update(
        {
            "id": str(uuid.uuid4()),
            "imsOrgId": emu.config.org_id,
            "sandbox": _sandbox(sandbox_of(request)),
            "mergePolicyId": "emulator-default-merge-policy",
            "dataGovernancePolicy": {"excludeOptOut": True},
            "creationTime": now,
            "updateEpoch": now // 1000,
            "updateTime": now,
            "version": 1,
        }
    )
    segment.setdefault("evaluationInfo", {"batch": {"enabled": True}})
    return emu.store.put("segments", segment["id"], segment)


def _page_url(emu: Emulator, path: str, **params: Any) -> str:
    """The absolute URL of a list page of this service."""
    return f"{emu.config.base_url}/data/core/ups{path}?{urllib.parse.urlencode(params)}"


@router.get("/segment/definitions")
def list_segments(emu: EmulatorDep, limit: int = 100, start: int | None = None, page: int = 0) -> dict[str, Any]:
    """Segment definitions, oldest first, ``limit`` from the offset ``start`` (or from page ``page``,
    counted from 0, as aepp asks); ``link.next`` is the next page's URL, empty on the last page."""
    everything = emu.store.all("segments")
    offset = start if start is not None else page * max(limit, 1)
    segments, following = offset_page(everything, offset, limit, "UPS", _INVALID)
    paging = {
        "totalCount": len(everything),
        "totalPages": math.ceil(len(everything) / limit),
        "sortField": "creationTime",
        "sort": "asc",
        "pageSize": len(segments),
        "limit": limit,
    }
    following_url = "" if following is None else _page_url(emu, "/segment/definitions", start=following, limit=limit)
    return {"segments": segments, "page": paging, "link": {"next": following_url}}


@router.get("/segment/definitions/{segment_id}")
def get_segment(segment_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One segment definition."""
    return segment_or_404(emu, segment_id)


@router.patch("/segment/definitions/{segment_id}")
def patch_segment(segment_id: str, body: JsonBody, emu: EmulatorDep) -> dict[str, Any]:
    """JSON-Patch a segment definition (e.g. replace ``/expression``); its version goes up by one."""
    segment = segment_or_404(emu, segment_id)
    patched = apply_json_patch(segment, body, "UPS", _INVALID)
    expression = patched.get("expression")
    try:
        parse_pql(str(expression.get("value", "")) if isinstance(expression, dict) else "")
    except PqlError as exc:
        raise bad_request(f"invalid PQL: {exc}", "UPS", _INVALID) from None
    now = now_ms()
    patched.update(id=segment_id, version=int(segment.get("version", 1)) + 1, updateTime=now, updateEpoch=now // 1000)
    return emu.store.put("segments", segment_id, patched)


@router.delete("/segment/definitions/{segment_id}", status_code=204)
def delete_segment(segment_id: str, emu: EmulatorDep) -> Response:
    """Delete a segment definition."""
    segment_or_404(emu, segment_id)
    emu.store.delete("segments", segment_id)
    return Response(status_code=204)


# -- segment jobs -------------------------------------------------------------------------------


@router.post("/segment/jobs")
def create_segment_job(body: JsonBody, emu: EmulatorDep) -> dict[str, Any]:
    """Evaluate segments now: ``[{"segmentId": ...}]`` -> a job (``NEW``) that runs in the background."""
    if (
        not isinstance(body, list)
        or not body
        or not all(isinstance(item, dict) and "segmentId" in item for item in body)
    ):
        raise bad_request('a segment job body is [{"segmentId": "..."}, ...]', "UPS", _INVALID)
    segments = [segment_or_404(emu, item["segmentId"]) for item in body]
    job_id = str(uuid.uuid4())
    now = now_ms()
    job = {
        "id": job_id,
        "imsOrgId": emu.config.org_id,
        "status": "NEW",
        "segments": [
            {
                "segmentId": s["id"],
                "segment": {"id": s["id"], "expression": s["expression"], "mergePolicyId": s["mergePolicyId"]},
            }
            for s in segments
        ],
        "metrics": {},
        "creationTime": now,
        "updateTime": now,
        "_links": {
            "cancel": {"href": f"/segment/jobs/{job_id}", "method": "DELETE"},
            "checkStatus": {"href": f"/segment/jobs/{job_id}", "method": "GET"},
        },
    }
    emu.store.put("segmentjobs", job_id, job)
    emu.submit(run_segment_job, emu, job_id, on_crash=lambda message: fail_segment_job(emu, job_id, message))
    return job


@router.get("/segment/jobs/{job_id}")
def get_segment_job(job_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One segment job with its status and metrics."""
    return emu.store.get_or_404("segmentjobs", job_id, "segment job", "UPS", _NOT_FOUND)


@router.get("/segment/jobs")
def list_segment_jobs(
    emu: EmulatorDep, limit: int = 100, start: int = 0, status: str | None = None, sort: str = "creationTime:desc"
) -> dict[str, Any]:
    """Segment jobs (newest first unless ``sort=creationTime:asc``), ``limit`` from the offset ``start``;
    ``_page.next`` is the next page's ``start`` and ``_links.next.href`` its URL (both empty on the last page)."""
    everything = [job for job in emu.store.all("segmentjobs") if status is None or job["status"] == status]
    if not sort.endswith(":asc"):
        everything.reverse()
    jobs, following = offset_page(everything, start, limit, "UPS", _INVALID)
    paging = {"totalCount": len(everything), "pageSize": len(jobs), "next": "" if following is None else str(following)}
    query = {"start": following, "limit": limit, "sort": sort} | ({"status": status} if status else {})
    links = {"next": {} if following is None else {"href": _page_url(emu, "/segment/jobs", **query)}}
    return {"_page": paging, "children": jobs, "_links": links}


def fail_segment_job(emu: Emulator, job_id: str, message: str) -> None:
    """Mark a segment job FAILED with ``message``, unless it has already finished."""

    def change(job: dict[str, Any]) -> None:
        if job["status"] in _UNFINISHED:
            job.update(status="FAILED", updateTime=now_ms(), errors=[{"code": "0100000003", "msg": message}])

    emu.store.update("segmentjobs", job_id, change)


def run_segment_job(emu: Emulator, job_id: str) -> None:
    """Evaluate every segment of a job and record members and metrics (or the failure)."""
    started = now_ms()
    job = emu.store.update("segmentjobs", job_id, lambda j: j.update(status="PROCESSING", updateTime=now_ms()))
    if job is None:
        return
    counts: dict[str, int] = {}
    try:
        profile = union_profile(emu)
        for item in job["segments"]:
            segment_id = item["segmentId"]
            predicate, params = compile_segment(profile, item["segment"]["expression"]["value"])
            with emu.engine.connect() as conn:
                emu.engine.fetchall(
                    conn,
                    f"INSERT INTO {emu.store.table('emu_segment_members')} (job_id, segment_id, identity) "
                    f"SELECT %s, %s, {IDENTITY} FROM ({profile.sql}) AS p WHERE {predicate}",
                    [job_id, segment_id, *params],
                )
            counts[segment_id] = emu.store.member_count(job_id, segment_id)
        with emu.engine.connect() as conn:
            total = int(emu.engine.fetchall(conn, f"SELECT count(*) FROM ({profile.sql}) AS p")[0][0])
    except Exception as exc:  # a failed evaluation is the job's FAILED status, as on AEP
        fail_segment_job(emu, job_id, message_of(exc))
        return
    ended = now_ms()
    metrics = {
        "totalTime": {"startTimeInMs": started, "endTimeInMs": ended, "totalTimeInMs": ended - started},
        "profileSegmentationTime": {"startTimeInMs": started, "endTimeInMs": ended, "totalTimeInMs": ended - started},
        "segmentedProfileCounter": counts,
        "segmentedProfileByStatusCounter": {sid: {"realized": n, "exited": 0} for sid, n in counts.items()},
        "totalProfiles": total,
        "totalProfilesByMergePolicy": {"emulator-default-merge-policy": total},
    }
    emu.store.update("segmentjobs", job_id, lambda j: j.update(status="SUCCEEDED", updateTime=ended, metrics=metrics))


def latest_job_for(emu: Emulator, segment_id: str) -> str:
    """The id of the latest succeeded segment job that evaluated ``segment_id``, or a 400."""
    for job in reversed(emu.store.all("segmentjobs")):
        if job["status"] == "SUCCEEDED" and any(s["segmentId"] == segment_id for s in job["segments"]):
            return str(job["id"])
    raise bad_request(f"segment {segment_id} has no succeeded segment job yet", "UPS", _INVALID)


# -- export jobs ----------------------------------------------------------------------------------


@router.post("/export/jobs")
def create_export_job(body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Export the profiles of segments into a dataset (a new batch of it), in the background."""
    dataset_id = (body.get("destination") or {}).get("datasetId")
    segments = ((body.get("filter") or {}).get("segments")) or []
    if not dataset_id or not segments:
        raise bad_request("an export job needs destination.datasetId and filter.segments", "UPS", _INVALID)
    dataset_or_404(emu, dataset_id)
    job_ids = {s["segmentId"]: latest_job_for(emu, segment_or_404(emu, s["segmentId"])["id"]) for s in segments}
    job_id = emu.store.next_export_job_id()
    job = {
        "id": job_id,
        "jobType": "BATCH",
        "status": "NEW",
        "fields": body.get("fields", ""),
        "filter": body.get("filter"),
        "mergePolicy": body.get("mergePolicy") or {"id": "emulator-default-merge-policy", "version": 1},
        "destination": {"datasetId": dataset_id, "segmentPerBatch": False, "batchId": None},
        "schema": body.get("schema") or {"name": "_xdm.context.profile"},
        "imsOrgId": emu.config.org_id,
        "creationTime": now_ms(),
        "updateTime": now_ms(),
        "metrics": {},
        "_emu_segment_jobs": job_ids,
    }
    emu.store.put("exportjobs", str(job_id), job)
    emu.submit(run_export_job, emu, str(job_id), on_crash=lambda message: fail_export_job(emu, str(job_id), message))
    return _public(job)


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """An export job without the emulator's own bookkeeping keys."""
    return {key: value for key, value in job.items() if not key.startswith("_emu")}


@router.get("/export/jobs/{job_id}")
def get_export_job(job_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One export job."""
    return _public(emu.store.get_or_404("exportjobs", job_id, "export job", "UPS", _NOT_FOUND))


@router.get("/export/jobs")
def list_export_jobs(emu: EmulatorDep, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Export jobs, newest first, ``limit`` from ``offset``; ``link.next`` is the next page's URL."""
    everything = [_public(job) for job in reversed(emu.store.all("exportjobs"))]
    jobs, following = offset_page(everything, offset, limit, "UPS", _INVALID)
    link = {} if following is None else {"next": _page_url(emu, "/export/jobs", offset=following, limit=limit)}
    return {"records": jobs, "page": {"totalCount": len(everything), "pageSize": len(jobs)}, "link": link}


def fail_export_job(emu: Emulator, job_id: str, message: str) -> None:
    """Mark an export job FAILED with ``message``, unless it has already finished."""

    def change(job: dict[str, Any]) -> None:
        if job["status"] in _UNFINISHED:
            job.update(status="FAILED", updateTime=now_ms(), errors=[{"msg": message}])

    emu.store.update("exportjobs", job_id, change)


def fail_unfinished_jobs(emu: Emulator) -> None:
    """At startup: a segment or export job a previous run left unfinished will never finish; mark it FAILED."""
    for job in emu.store.all("segmentjobs"):
        if job["status"] in _UNFINISHED:
            fail_segment_job(emu, job["id"], RESTARTED)
    for job in emu.store.all("exportjobs"):
        if job["status"] in _UNFINISHED:
            fail_export_job(emu, str(job["id"]), RESTARTED)


def export_columns(fields: str, columns: list[Column], identity_path: str) -> list[Column]:
    """The destination columns an export fills: those of ``fields`` (all when empty) plus the identity."""
    if not fields.strip():
        return columns
    wanted = {column_name(path.strip()) for path in fields.split(",") if path.strip()} | {column_name(identity_path)}
    return [column for column in columns if column.name in wanted]


def run_export_job(emu: Emulator, job_id: str) -> None:
    """Write the members' union-profile attributes into the destination dataset as one new batch."""
    job = emu.store.update("exportjobs", job_id, lambda j: j.update(status="PROCESSING", updateTime=now_ms()))
    if job is None:
        return
    batch_id = uuid.uuid4().hex[:26]
    try:
        profile = union_profile(emu)
        dataset = dataset_or_404(emu, job["destination"]["datasetId"])
        _, columns = dataset_columns(emu, dataset)
        available = {c.name for c in profile.paths.values()}
        filled = [c for c in export_columns(job["fields"], columns, profile.identity_path) if c.name in available]
        rows = _insert_members(emu, table_of(dataset), profile, filled, job["_emu_segment_jobs"], batch_id)
    except Exception as exc:  # the job fails, as on AEP
        fail_export_job(emu, job_id, message_of(exc))
        return
    _record_export_batch(emu, dataset["id"], batch_id, rows)

    def done(j: dict[str, Any]) -> None:
        j["destination"]["batchId"] = batch_id
        j.update(status="SUCCEEDED", updateTime=now_ms(), metrics={"totalExportedProfileCounter": rows})

    emu.store.update("exportjobs", job_id, done)


def _insert_members(
    emu: Emulator, table: str, profile: UnionProfile, columns: list[Column], jobs: dict[str, str], batch_id: str
) -> int:
    """INSERT the members of the segments' jobs into ``table``; returns the row count."""
    check_name(table)
    targets = ", ".join([*(identifier(c.name) for c in columns), "_emu_batch"])
    selected = ", ".join([*(f"CAST(p.{identifier(c.name)} AS {emu.engine.sql_type(c)})" for c in columns), "%s"])
    membership = " OR ".join(["(m.job_id = %s AND m.segment_id = %s)"] * len(jobs))
    params: list[Any] = [batch_id]
    for segment_id, job_id in jobs.items():
        params += [job_id, segment_id]
    with emu.engine.connect() as conn:
        emu.engine.fetchall(
            conn,
            f"INSERT INTO {identifier(table)} ({targets}) SELECT {selected} FROM ({profile.sql}) AS p "
            f"WHERE p.{IDENTITY} IN (SELECT m.identity FROM {emu.store.table('emu_segment_members')} AS m "
            f"WHERE {membership})",
            params,
        )
        return int(
            emu.engine.fetchall(conn, f"SELECT count(*) FROM {identifier(table)} WHERE _emu_batch = %s", [batch_id])[0][
                0
            ]
        )


def _record_export_batch(emu: Emulator, dataset_id: str, batch_id: str, rows: int) -> None:
    """Record the export's batch in Catalog as a successful batch of the dataset."""
    now = now_ms()
    emu.store.put(
        "batches",
        batch_id,
        {
            "id": batch_id,
            "imsOrg": emu.config.org_id,
            "created": now,
            "updated": now,
            "completed": now,
            "status": "success",
            "relatedObjects": [{"type": "dataSet", "id": dataset_id}],
            "version": "1.0.0",
            "tags": {"source": ["profile export job"]},
            "inputFormat": {"format": "parquet"},
            "metrics": {"inputRecordCount": rows, "outputRecordCount": rows},
            "errors": [],
        },
    )
    emu.store.update("datasets", dataset_id, lambda d: d.update(lastBatchId=batch_id, lastBatchStatus="success"))
