"""Ad-hoc runs of Data Landing Zone flows (``/data/core/activation/disflowprovider/adhocrun``).

A run is a record of Flow Service (:mod:`.flows`) that starts ``processing`` and ends ``success``
or ``failed`` with AEP's metrics (``statusSummary.extensions.outputFiles``: ``{"count", "files"}``, an
object as destinations.yaml's Extensions are). A dataset export writes Parquet parts of each dataset's
table under ``<dlz>/dlz-destination/<path>/<datasetId>/exportTime=YYYYMMDDHHMM/``; an audience activation
writes one CSV per segment (header: the identity path, then the flow's selected profile paths)
under ``<dlz>/dlz-destination/<path>/``, from the segment's latest succeeded segment job.

As on AEP, an exported file holds at most ``rows_per_file`` (5 million) rows: a dataset export's parts
are ``part-<n>.parquet``, a segment's CSV goes on in ``<name>_2.csv``, ``<name>_3.csv``...; and Data
Landing Zone files are deleted once older than ``dlz_retention_days`` (7) by their modification time,
whenever a run writes (https://experienceleague.adobe.com/en/docs/experience-platform/destinations/catalog/cloud-storage/data-landing-zone).
The limits are :data:`.config.LIMITS`.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import APIRouter, Request
from fsspec.implementations.local import LocalFileSystem

from aep_propensity.platform.core.exports import write_parquet_parts
from aep_propensity.platform.core.sql import identifier

from .catalog import dataset_or_404, table_of
from .errors import bad_request, message_of
from .flows import DLZ_CONTAINER, FLOWS, get_object, new_etag, selectors
from .ingestion import limit
from .segmentation import audience_members, latest_job_for
from .service import Emulator, EmulatorDep, JsonObject, now_ms, sandbox_of
from .xdm_schema import BATCH_COLUMN

router = APIRouter()

_INVALID = "FLOW-1400-400"
_TEMPLATE = "%DESTINATION_NAME%_%SEGMENT_ID%_%DATETIME(YYYYMMdd_HHmmss)%"
RUNNING = "processing"


def _new_run(emu: Emulator, flow: dict[str, Any], request: Request) -> dict[str, Any]:
    """Store a new :data:`RUNNING` run of a flow."""
    run = {
        "id": str(uuid.uuid4()),
        "flowId": flow["id"],
        "flowSpec": flow["flowSpec"],
        "createdAt": now_ms(),
        "updatedAt": now_ms(),
        "sandboxName": sandbox_of(request),
        "sandboxId": sandbox_of(request),
        "imsOrgId": emu.config.org_id,
        **{key: emu.config.client_id for key in ("createdBy", "createdClient", "updatedBy", "updatedClient")},
        "etag": new_etag(),
        "metrics": {
            "durationSummary": {"startedAtUTC": now_ms()},
            "statusSummary": {"status": RUNNING, "extensions": {}},
        },
        "activities": [],
    }
    return emu.store.put("runs", run["id"], run)


def _submit_run(emu: Emulator, run_id: str, job: Callable[[Emulator, str, Any], None], argument: Any) -> None:
    """Run ``job(emu, run_id, argument)`` in the background; if it dies, the run is marked failed."""
    emu.submit(job, emu, run_id, argument, on_crash=lambda message: fail_run(emu, run_id, message))


def fail_run(emu: Emulator, run_id: str, message: str) -> None:
    """Mark a run failed with ``message``, unless it has already finished."""
    run = emu.store.get("runs", run_id)
    if run is not None and run["metrics"]["statusSummary"]["status"] == RUNNING:
        _finish_run(emu, run_id, "failed", 0, 0, 0, errors=[{"message": message}])


def fail_unfinished_runs(emu: Emulator) -> None:
    """At startup: a run a previous run of the emulator left in progress will never finish; mark it failed."""
    for run in emu.store.all("runs"):
        if run["metrics"]["statusSummary"]["status"] == RUNNING:
            fail_run(emu, run["id"], "the emulator restarted while this run was in progress; run it again")


def _status_url(emu: Emulator, run_id: str) -> str:
    """The URL of a run's status."""
    return f"{emu.config.base_url}{FLOWS}/runs/{run_id}"


@router.post("/data/core/activation/disflowprovider/adhocrun")
def adhoc_run(request: Request, body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Run flows now: datasets (``destinations[{flowId, datasets}]``) or audiences (``{flowId: [segmentIds]}``)."""
    accept = request.headers.get("accept", "")
    info = body.get("activationInfo")
    if "application/vnd.adobe.adhoc" not in accept or not isinstance(info, dict):
        raise bad_request(
            "ad-hoc runs need an application/vnd.adobe.adhoc...activation+json Accept header and activationInfo",
            "FLOW",
            _INVALID,
        )
    if "dataset" in accept:
        return _dataset_runs(emu, request, info)
    return _audience_runs(emu, request, info)


def _dataset_runs(emu: Emulator, request: Request, info: dict[str, Any]) -> dict[str, Any]:
    """Start one dataset export run per destination flow."""
    answer = []
    for destination in info.get("destinations") or []:
        flow = get_object(emu, "flows", destination.get("flowId", ""))
        dataset_ids = [item["id"] for item in destination.get("datasets") or []]
        for dataset_id in dataset_ids:
            dataset_or_404(emu, dataset_id)
        run = _new_run(emu, flow, request)
        _submit_run(emu, run["id"], run_dataset_export, dataset_ids)
        datasets = [{"id": ident, "statusURL": _status_url(emu, run["id"])} for ident in dataset_ids]
        answer.append({"flowId": flow["id"], "datasets": datasets})
    if not answer:
        raise bad_request("activationInfo.destinations is empty", "FLOW", _INVALID)
    return {"destinations": answer}


def _audience_runs(emu: Emulator, request: Request, info: dict[str, Any]) -> dict[str, Any]:
    """Start one audience activation run per flow for the segments mapped to it."""
    order = []
    for flow_id, segment_ids in info.items():
        flow = get_object(emu, "flows", flow_id)
        mapped = {s["value"]["id"]: s["value"] for s in selectors(flow, "segmentSelectors")}
        unknown = [sid for sid in segment_ids if sid not in mapped]
        if unknown:
            raise bad_request(f"segments {unknown} are not mapped to flow {flow_id}", "FLOW", _INVALID)
        jobs = {sid: latest_job_for(emu, sid) for sid in segment_ids}
        run = _new_run(emu, flow, request)
        _submit_run(emu, run["id"], run_audience_export, jobs)
        order += [{"segment": sid, "order": run["id"], "statusURL": _status_url(emu, run["id"])} for sid in segment_ids]
    return {"order": order}


def _target_folder(emu: Emulator, flow: dict[str, Any]) -> Path:
    """The DLZ folder of a flow's target connection (its ``params.path``)."""
    target = get_object(emu, "targetconns", flow["targetConnectionIds"][0])
    path = str((target.get("params") or {}).get("path", "")).strip("/")
    parts = [part for part in path.split("/") if part and part not in (".", "..")]
    return (emu.config.dlz_root / DLZ_CONTAINER).joinpath(*parts).resolve()


def _finish_run(emu: Emulator, run_id: str, status: str, rows: int, files: int, size: int, **extra: Any) -> None:
    """Record a run's outcome and metrics."""

    def change(run: dict[str, Any]) -> None:
        metrics = run["metrics"]
        if metrics["statusSummary"]["status"] != RUNNING:
            return
        metrics["durationSummary"]["completedAtUTC"] = now_ms()
        metrics["recordSummary"] = {
            "inputRecordCount": rows,
            "outputRecordCount": rows,
            "skippedRecordCount": 0,
            "failedRecordCount": 0,
        }
        metrics["fileSummary"] = {"outputFileCount": files}
        metrics["sizeSummary"] = {"inputBytes": size, "outputBytes": size}
        errors = extra.pop("errors", None)
        metrics["statusSummary"] = {"status": status, "extensions": extra} | ({"errors": errors} if errors else {})
        run["updatedAt"] = now_ms()

    emu.store.update("runs", run_id, change)


def _flow_of_run(emu: Emulator, run_id: str) -> dict[str, Any]:
    """The flow a run belongs to; a ValueError when the flow was deleted since."""
    flow = emu.store.get("flows", get_object(emu, "runs", run_id)["flowId"])
    if flow is None:
        raise ValueError("the run's flow was deleted")
    return flow


def claim_export_folder(folder: Path) -> Path:
    """Create and return ``folder/exportTime=YYYYMMDDHHMM`` for this minute, or for the next free minute
    when an export already took it: every export gets its own folder, and the newest sorts last."""
    folder.mkdir(parents=True, exist_ok=True)
    minute = int(time.time() // 60)
    while True:
        claimed = folder / f"exportTime={time.strftime('%Y%m%d%H%M', time.gmtime(minute * 60))}"
        try:
            claimed.mkdir()
        except FileExistsError:
            minute += 1
            continue
        return claimed


def run_dataset_export(emu: Emulator, run_id: str, dataset_ids: list[str]) -> None:
    """Write each dataset's rows (without the hidden batch column) as Parquet parts into the DLZ."""
    fs = LocalFileSystem()
    rows = size = 0
    written: list[str] = []
    try:
        flow = _flow_of_run(emu, run_id)
        expire_dlz(emu)
        for dataset_id in dataset_ids:
            table = table_of(dataset_or_404(emu, dataset_id))
            final = claim_export_folder(_target_folder(emu, flow) / dataset_id)
            staging = final.parent / f"_staging-{run_id}"
            with emu.engine.connect(read_only=True) as conn:
                columns = [name for name, _ in emu.engine.table_columns(conn, table) or [] if name != BATCH_COLUMN]
                selected = ", ".join(str(identifier(name)) for name in columns)
                batches = emu.engine.stream(conn, f"SELECT {selected} FROM {identifier(table)}", 131_072)
                write_parquet_parts(batches, fs, str(staging), limit(emu, "rows_per_file"), "snappy")
            for part in sorted(staging.glob("part-*.parquet")):
                target = final / part.name
                part.replace(target)
                written.append(str(target))
                size += target.stat().st_size
            shutil.rmtree(staging, ignore_errors=True)
            rows += _count(emu, table)
    except Exception as exc:  # the run fails, as on AEP
        _finish_run(emu, run_id, "failed", rows, len(written), size, errors=[{"message": message_of(exc)}])
        return
    _finish_run(emu, run_id, "success", rows, len(written), size, outputFiles=output_files(written))


def _count(emu: Emulator, table: str) -> int:
    """Rows of a table."""
    with emu.engine.connect(read_only=True) as conn:
        return int(emu.engine.fetchall(conn, f"SELECT count(*) FROM {identifier(table)}")[0][0])


def file_name(template: str, flow_name: str, segment_id: str) -> str:
    """A file name from AEP's filename template macros (unknown macros are dropped)."""
    name = template.replace("%DESTINATION_NAME%", flow_name).replace("%SEGMENT_ID%", segment_id)
    name = re.sub(r"%DATETIME\([^)]*\)%", time.strftime("%Y%m%d_%H%M%S", time.gmtime()), name)
    name = re.sub(r"%[A-Z_]+%", "", name)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".csv"


def run_audience_export(emu: Emulator, run_id: str, jobs: dict[str, str]) -> None:
    """Write one CSV per segment: the identity, then the flow's selected profile paths."""
    rows = size = 0
    written: list[str] = []
    try:
        flow = _flow_of_run(emu, run_id)
        paths = [s["value"]["path"] for s in selectors(flow, "profileSelectors")]
        members = audience_members(emu, jobs, paths)
        folder = _target_folder(emu, flow)
        expire_dlz(emu)
        folder.mkdir(parents=True, exist_ok=True)
        mapped = {s["value"]["id"]: s["value"] for s in selectors(flow, "segmentSelectors")}
        for segment_id, table in members:
            name = file_name(mapped[segment_id].get("filenameTemplate") or _TEMPLATE, flow["name"], segment_id)
            for target in write_csv_parts(table, folder, name, limit(emu, "rows_per_file")):
                size += target.stat().st_size
                written.append(str(target))
            rows += table.num_rows
    except Exception as exc:  # the run fails, as on AEP
        _finish_run(emu, run_id, "failed", rows, len(written), size, errors=[{"message": message_of(exc)}])
        return
    _finish_run(emu, run_id, "success", rows, len(written), size, outputFiles=output_files(written))


def part_name(name: str, index: int) -> str:
    """The name of an exported file's ``index``-th part (from 0): ``name`` itself, then ``<stem>_2<suffix>``..."""
    if index == 0:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_{index + 1}{dot}{suffix}" if dot else f"{name}_{index + 1}"


def write_csv_parts(table: pa.Table, folder: Path, name: str, rows_per_file: int) -> list[Path]:
    """Write ``table`` as CSV files of at most ``rows_per_file`` rows each (:func:`part_name`; one file, with
    its header only, for no rows); their paths."""
    written = []
    for index, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        target = folder / part_name(name, index)
        pacsv.write_csv(table.slice(start, rows_per_file), str(target))
        written.append(target)
    return written


def output_files(paths: list[str]) -> dict[str, Any]:
    """A run's ``outputFiles`` extension: an object (destinations.yaml's Extensions), the count and the paths."""
    return {"count": len(paths), "files": paths}


def expire_dlz(emu: Emulator) -> None:
    """Delete the Data Landing Zone's files, then its folders left empty, last modified (before this pass)
    more than ``dlz_retention_days`` ago."""
    cutoff = time.time() - limit(emu, "dlz_retention_days") * 86_400
    stale = [path for path in emu.config.dlz_root.rglob("*") if _modified(path) < cutoff]
    for path in sorted(stale, key=lambda item: len(item.parts), reverse=True):
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        except OSError:  # a folder still holding newer files, or a path a concurrent run removed first
            continue


def _modified(path: Path) -> float:
    """A path's modification time; infinity when it is already gone."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
