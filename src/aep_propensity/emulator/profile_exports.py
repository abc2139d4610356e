"""Segmentation Service's profile export jobs (``/data/core/ups/export/jobs``).

An export job writes the union-profile attributes (:mod:`.profiles`) of the members of segments,
as their latest succeeded segment jobs found them, into a dataset as one new successful batch,
where the Query Service reads them. As on AEP, jobs have integer ids and report
``metrics.totalExportedProfileCounter``. No caller of the project uses them; the contract tests do.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from aep_propensity.platform.core.port import Column, check_name
from aep_propensity.platform.core.sql import identifier

from .catalog import dataset_columns, dataset_or_404, table_of
from .errors import bad_request, message_of
from .profiles import IDENTITY, UnionProfile, union_profile
from .segmentation import INVALID, NOT_FOUND, RESTARTED, UNFINISHED, latest_job_for, page_url, segment_or_404
from .service import Emulator, EmulatorDep, JsonObject, now_ms, offset_page
from .xdm_schema import BATCH_COLUMN, column_name

router = APIRouter(prefix="/data/core/ups")


@router.post("/export/jobs")
def create_export_job(body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Export the profiles of segments into a dataset (a new batch of it), in the background."""
    dataset_id = member(body, "destination", "datasetId")
    segment_ids = segment_ids_of(member(body, "filter", "segments"))
    if not isinstance(dataset_id, str) or not dataset_id or not segment_ids:
        raise bad_request(
            "an export job needs destination.datasetId and filter.segments ([{segmentId}, ...])", "UPS", INVALID
        )
    dataset_or_404(emu, dataset_id)
    job_ids = {ident: latest_job_for(emu, segment_or_404(emu, ident)["id"]) for ident in segment_ids}
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


def member(body: dict[str, Any], outer: str, inner: str) -> Any:
    """``body[outer][inner]`` when ``body[outer]`` is an object, else None."""
    container = body.get(outer)
    return container.get(inner) if isinstance(container, dict) else None


def segment_ids_of(segments: Any) -> list[str]:
    """The ids of ``filter.segments`` (``[{"segmentId": "..."}, ...]``); none unless every item is such
    an object with a text id."""
    if not isinstance(segments, list) or not segments:
        return []
    ids = [item.get("segmentId") if isinstance(item, dict) else None for item in segments]
    return ids if all(isinstance(ident, str) and ident for ident in ids) else []


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """An export job without the emulator's own bookkeeping keys."""
    return {key: value for key, value in job.items() if not key.startswith("_emu")}


@router.get("/export/jobs/{job_id}")
def get_export_job(job_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One export job."""
    return _public(emu.store.get_or_404("exportjobs", job_id, "export job", "UPS", NOT_FOUND))


@router.get("/export/jobs")
def list_export_jobs(emu: EmulatorDep, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Export jobs, newest first, ``limit`` from ``offset``; ``link.next`` is the next page's URL."""
    everything = [_public(job) for job in reversed(emu.store.all("exportjobs"))]
    jobs, following = offset_page(everything, offset, limit, "UPS", INVALID)
    link = {} if following is None else {"next": page_url(emu, "/export/jobs", offset=following, limit=limit)}
    return {"records": jobs, "page": {"totalCount": len(everything), "pageSize": len(jobs)}, "link": link}


def fail_export_job(emu: Emulator, job_id: str, message: str) -> None:
    """Mark an export job FAILED with ``message``, unless it has already finished."""

    def change(job: dict[str, Any]) -> None:
        if job["status"] in UNFINISHED:
            job.update(status="FAILED", updateTime=now_ms(), errors=[{"msg": message}])

    emu.store.update("exportjobs", job_id, change)


def fail_unfinished_jobs(emu: Emulator) -> None:
    """At startup: an export job a previous run left unfinished will never finish; mark it FAILED."""
    for job in emu.store.all("exportjobs"):
        if job["status"] in UNFINISHED:
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
    batch = identifier(BATCH_COLUMN)
    targets = ", ".join([*(identifier(c.name) for c in columns), batch])
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
        counted = emu.engine.fetchall(conn, f"SELECT count(*) FROM {identifier(table)} WHERE {batch} = %s", [batch_id])
        return int(counted[0][0])


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
