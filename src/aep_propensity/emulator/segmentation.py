"""Segmentation Service (``/data/core/ups``): segment definitions and segment jobs.

A segment definition holds a PQL expression (its syntax is checked when it is written, its fields
when it is evaluated). A segment job evaluates each of its segments over the union profile
(:mod:`.profiles`) in the background and keeps their members in ``emu_segment_members``; a
destination flow reads them back through :func:`audience_members`.
"""

from __future__ import annotations

import math
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Request, Response

from aep_propensity.platform.core.pql import PqlError, parse_pql
from aep_propensity.platform.core.sql import identifier

from .errors import bad_request, message_of, of_kind
from .profiles import IDENTITY, UnionProfile, compile_segment, union_profile
from .service import Emulator, EmulatorDep, JsonBody, JsonObject, apply_json_patch, now_ms, offset_page, sandbox_of
from .xdm_schema import column_name

router = APIRouter(prefix="/data/core/ups")

#: Segmentation's error codes (shared by its profile export jobs, :mod:`.profile_exports`).
INVALID = "UPS-1400-400"
NOT_FOUND = "UPS-1404-404"
#: Job statuses before the end, and the error of a job a restart cut short.
UNFINISHED = ("NEW", "QUEUED", "PROCESSING")
RESTARTED = "the emulator restarted while this job was running; run it again"


def page_url(emu: Emulator, path: str, **params: Any) -> str:
    """The absolute URL of a list page of this service."""
    return f"{emu.config.base_url}/data/core/ups{path}?{urllib.parse.urlencode(params)}"


# -- segment definitions ------------------------------------------------------------------------


def segment_or_404(emu: Emulator, segment_id: str) -> dict[str, Any]:
    """A segment definition by id, or Segmentation's 404 problem document."""
    return emu.store.get_or_404("segments", segment_id, "segment definition", "UPS", NOT_FOUND)


def _sandbox(name: str) -> dict[str, Any]:
    """The ``sandbox`` object Segmentation answers with."""
    return {"sandboxId": name, "sandboxName": name, "type": "development", "default": name == "prod"}


def _check_pql(rule: str) -> None:
    """A 400 unless ``rule`` parses as PQL."""
    try:
        parse_pql(rule)
    except PqlError as exc:
        raise bad_request(f"invalid PQL: {exc}", "UPS", INVALID) from None


@router.post("/segment/definitions")
def create_segment(request: Request, body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Create a segment definition with a PQL expression (syntax checked here, fields at evaluation)."""
    expression = of_kind(body.get("expression"), dict, "expression", "UPS", INVALID) or {}
    of_kind(expression.get("value"), str, "expression.value", "UPS", INVALID)
    if not body.get("name") or not body.get("schema") or not expression.get("value"):
        raise bad_request("a segment definition needs name, schema and expression.value", "UPS", INVALID)
    if expression.get("type", "PQL") != "PQL":
        raise bad_request("only PQL expressions are supported", "UPS", INVALID)
    _check_pql(expression["value"])
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


@router.get("/segment/definitions")
def list_segments(emu: EmulatorDep, limit: int = 100, start: int | None = None, page: int = 0) -> dict[str, Any]:
    """Segment definitions, oldest first, ``limit`` from the offset ``start`` (or from page ``page``,
    counted from 0, as aepp asks); ``link.next`` is the next page's URL, empty on the last page."""
    everything = emu.store.all("segments")
    offset = start if start is not None else page * max(limit, 1)
    segments, following = offset_page(everything, offset, limit, "UPS", INVALID)
    paging = {
        "totalCount": len(everything),
        "totalPages": math.ceil(len(everything) / limit),
        "sortField": "creationTime",
        "sort": "asc",
        "pageSize": len(segments),
        "limit": limit,
    }
    following_url = "" if following is None else page_url(emu, "/segment/definitions", start=following, limit=limit)
    return {"segments": segments, "page": paging, "link": {"next": following_url}}


@router.get("/segment/definitions/{segment_id}")
def get_segment(segment_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One segment definition."""
    return segment_or_404(emu, segment_id)


@router.patch("/segment/definitions/{segment_id}")
def patch_segment(segment_id: str, body: JsonBody, emu: EmulatorDep) -> dict[str, Any]:
    """JSON-Patch a segment definition (e.g. replace ``/expression``); its version goes up by one."""
    segment = segment_or_404(emu, segment_id)
    patched = apply_json_patch(segment, body, "UPS", INVALID)
    expression = patched.get("expression")
    _check_pql(str(expression.get("value", "")) if isinstance(expression, dict) else "")
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
        raise bad_request('a segment job body is [{"segmentId": "..."}, ...]', "UPS", INVALID)
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
                "segment": {
                    "id": s["id"],
                    "expression": s["expression"],
                    "mergePolicyId": s["mergePolicyId"],
                    "mergePolicy": {"id": s["mergePolicyId"], "version": 1},
                },
            }
            for s in segments
        ],
        # required by the spec (SegmentJob.metrics) from the start; the end times come with the result
        "metrics": {"totalTime": {"startTimeInMs": now}, "profileSegmentationTime": {"startTimeInMs": now}},
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
    return emu.store.get_or_404("segmentjobs", job_id, "segment job", "UPS", NOT_FOUND)


@router.get("/segment/jobs")
def list_segment_jobs(
    emu: EmulatorDep, limit: int = 100, start: int = 0, status: str | None = None, sort: str = "creationTime:desc"
) -> dict[str, Any]:
    """Segment jobs (newest first unless ``sort=creationTime:asc``), ``limit`` from the offset ``start``;
    ``_page.next`` is the next page's ``start`` and ``_links.next.href`` its URL (both empty on the last page)."""
    everything = [job for job in emu.store.all("segmentjobs") if status is None or job["status"] == status]
    if not sort.endswith(":asc"):
        everything.reverse()
    jobs, following = offset_page(everything, start, limit, "UPS", INVALID)
    paging = {"totalCount": len(everything), "pageSize": len(jobs), "next": "" if following is None else str(following)}
    query = {"start": following, "limit": limit, "sort": sort} | ({"status": status} if status else {})
    links = {"next": {} if following is None else {"href": page_url(emu, "/segment/jobs", **query)}}
    return {"_page": paging, "children": jobs, "_links": links}


def fail_segment_job(emu: Emulator, job_id: str, message: str) -> None:
    """Mark a segment job FAILED with ``message``, unless it has already finished."""

    def change(job: dict[str, Any]) -> None:
        if job["status"] in UNFINISHED:
            job.update(status="FAILED", updateTime=now_ms(), errors=[{"code": "0100000003", "msg": message}])

    emu.store.update("segmentjobs", job_id, change)


def fail_unfinished_jobs(emu: Emulator) -> None:
    """At startup: a segment job a previous run left unfinished will never finish; mark it FAILED."""
    for job in emu.store.all("segmentjobs"):
        if job["status"] in UNFINISHED:
            fail_segment_job(emu, job["id"], RESTARTED)


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
    raise bad_request(f"segment {segment_id} has no succeeded segment job yet", "UPS", INVALID)


# -- members ------------------------------------------------------------------------------------


def audience_members(emu: Emulator, jobs: dict[str, str], paths: list[str]) -> Iterator[tuple[str, pa.Table]]:
    """Each segment's members in its job (``jobs``: segment id -> segment job id) with their union-profile
    attributes: ``(segment id, table)``, the table headed by the identity's XDM path, then ``paths`` (a
    destination's profile selectors). Paths outside the union profile are a ValueError, raised at once;
    each segment's members are read when their turn comes."""
    profile = union_profile(emu)
    unknown = [path for path in paths if path not in profile.paths]
    if unknown:
        raise ValueError(f"profile selectors {unknown} are not fields of the union profile")
    return ((segment_id, _members(emu, profile, paths, job_id, segment_id)) for segment_id, job_id in jobs.items())


def _members(emu: Emulator, profile: UnionProfile, paths: list[str], job_id: str, segment_id: str) -> pa.Table:
    """A segment job's members with their selected attributes, headed by XDM paths."""
    selected = ["m.identity", *(f"p.{identifier(column_name(path))}" for path in paths)]
    sql = (
        f"SELECT {', '.join(selected)} FROM {emu.store.table('emu_segment_members')} AS m "
        f"LEFT JOIN ({profile.sql}) AS p "
        f"ON p.{IDENTITY} = m.identity WHERE m.job_id = %s AND m.segment_id = %s ORDER BY m.identity"
    )
    with emu.engine.connect(read_only=True) as conn:
        rows = emu.engine.fetchall(conn, sql, [job_id, segment_id])
    header = [profile.identity_path, *paths]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    return pa.Table.from_arrays([pa.array(list(values)) for values in columns], names=header)
