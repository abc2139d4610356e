"""Batch Ingestion (``/data/foundation/import``): create a batch, upload files, complete, promote.

Files are kept under ``<data-dir>/batches/<batch>/<dataset>/``. COMPLETE moves the batch to
``staging``; a background thread flattens every file by the dataset's schema and ingests them all
as one all-or-nothing batch of the local platform, then marks the batch ``success`` or ``failed``
with AEP's ``errors[{code, description, rows}]``. Every stored row carries its batch id in the
hidden ``_emu_batch`` column, which is how REVERT deletes a batch's rows.
"""

from __future__ import annotations

import io
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Header, Request, Response

from aep_propensity.platform.port import Column, DatasetSpec
from aep_propensity.platform.sql import identifier

from .catalog import dataset_columns, dataset_or_404, table_of
from .errors import bad_request, not_found
from .service import Emulator, EmulatorDep, JsonObject, now_ms
from .xdm_schema import XdmError, arrow_to_paths, conform, json_to_paths, parse_json_records

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/data/foundation/import")

_INVALID = "INGEST-1400-400"
_NOT_FOUND = "INGEST-1404-404"
_FORMATS = ("json", "parquet")


class BatchFailure(Exception):
    """A batch cannot be promoted: AEP's error code and description."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def batch_or_404(emu: Emulator, batch_id: str) -> dict[str, Any]:
    """A batch by id, or a 404 problem document."""
    batch = emu.store.get("batches", batch_id)
    if batch is None:
        raise not_found("batch", batch_id, "INGEST", _NOT_FOUND)
    return batch


def batch_folder(emu: Emulator, batch_id: str) -> Path:
    """Where a batch's uploaded files live."""
    return emu.config.data_dir / "batches" / batch_id


def _set_status(emu: Emulator, batch_id: str, status: str, **fields: Any) -> dict[str, Any] | None:
    """Set a batch's status (and other fields) and its update time."""

    def change(batch: dict[str, Any]) -> None:
        batch.update(fields, status=status, updated=now_ms())

    return emu.store.update("batches", batch_id, change)


@router.post("/batches", status_code=201)
def create_batch(request: Request, body: JsonObject, emu: EmulatorDep) -> dict:
    """Open a batch (``loading``) for a dataset with ``inputFormat.format`` json or parquet."""
    dataset_id = body.get("datasetId")
    if not dataset_id:
        raise bad_request("datasetId is required", "INGEST", _INVALID)
    dataset_or_404(emu, dataset_id)
    input_format = dict(body.get("inputFormat") or {})
    fmt = str(input_format.get("format", "")).lower()
    if fmt not in _FORMATS:
        raise bad_request(f"inputFormat.format must be one of {list(_FORMATS)}, not {fmt!r}", "INGEST", _INVALID)
    input_format["format"] = fmt
    batch_id = uuid.uuid4().hex[:26]
    batch = {
        "id": batch_id,
        "imsOrg": emu.config.org_id,
        "created": now_ms(),
        "updated": now_ms(),
        "status": "loading",
        "relatedObjects": [{"type": "dataSet", "id": dataset_id}],
        "version": "1.0.0",
        "tags": body.get("tags") or {},
        "inputFormat": input_format,
        "createdUser": emu.config.client_id,
        "updatedUser": emu.config.client_id,
        "sandboxName": getattr(request.state, "sandbox", "prod"),
    }
    if body.get("replay"):
        batch["replay"] = body["replay"]
    return emu.store.put("batches", batch_id, batch)


def _upload_target(emu: Emulator, batch_id: str, dataset_id: str, file_path: str) -> Path:
    """The local path of an uploaded file, for a batch still ``loading`` on that dataset."""
    batch = batch_or_404(emu, batch_id)
    dataset_or_404(emu, dataset_id)
    if batch["relatedObjects"][0]["id"] != dataset_id:
        raise bad_request(f"batch {batch_id} does not belong to dataset {dataset_id}", "INGEST", _INVALID)
    if batch["status"] != "loading":
        raise bad_request(
            f"batch {batch_id} is {batch['status']}; files can only be added while loading", "INGEST", _INVALID
        )
    parts = [part for part in file_path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise bad_request(f"invalid file path {file_path!r}", "INGEST", _INVALID)
    target = batch_folder(emu, batch_id).joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


@router.put("/batches/{batch_id}/datasets/{dataset_id}/files/{file_path:path}")
async def upload_file(batch_id: str, dataset_id: str, file_path: str, request: Request, emu: EmulatorDep) -> Response:
    """Upload (or replace) one small file of a batch: 201 when new, 200 when replaced."""
    target = _upload_target(emu, batch_id, dataset_id, file_path)
    existed = target.exists()
    with target.open("wb") as sink:
        async for chunk in request.stream():
            sink.write(chunk)
    return Response(status_code=200 if existed else 201)


@router.patch("/batches/{batch_id}/datasets/{dataset_id}/files/{file_path:path}")
async def upload_chunk(
    batch_id: str,
    dataset_id: str,
    file_path: str,
    request: Request,
    content_range: Annotated[str, Header()],
    emu: EmulatorDep,
) -> Response:
    """Write one chunk (``Content-Range: bytes start-end``) of a large file opened with INITIALIZE."""
    target = _upload_target(emu, batch_id, dataset_id, file_path)
    partial = target.with_name(target.name + ".partial")
    if not partial.exists():
        raise bad_request(f"file {file_path!r} was not initialized", "INGEST", _INVALID)
    try:
        start, end = (int(value) for value in content_range.removeprefix("bytes").strip().split("/")[0].split("-"))
    except ValueError:
        raise bad_request(f"invalid Content-Range {content_range!r}", "INGEST", _INVALID) from None
    data = await request.body()
    if len(data) != end - start + 1:
        raise bad_request("Content-Range does not match the chunk's length", "INGEST", _INVALID)
    with partial.open("r+b") as sink:
        sink.seek(start)
        sink.write(data)
    return Response(status_code=200)


@router.post("/batches/{batch_id}/datasets/{dataset_id}/files/{file_path:path}", status_code=201)
def large_file_action(batch_id: str, dataset_id: str, file_path: str, action: str, emu: EmulatorDep) -> Response:
    """``?action=INITIALIZE`` opens a large file; ``?action=COMPLETE`` closes it."""
    target = _upload_target(emu, batch_id, dataset_id, file_path)
    partial = target.with_name(target.name + ".partial")
    if action == "INITIALIZE":
        partial.write_bytes(b"")
    elif action == "COMPLETE":
        if not partial.exists():
            raise bad_request(f"file {file_path!r} was not initialized", "INGEST", _INVALID)
        partial.replace(target)
    else:
        raise bad_request(f"unknown file action {action!r}", "INGEST", _INVALID)
    return Response(status_code=201)


@router.post("/batches/{batch_id}")
def batch_action(batch_id: str, action: str, emu: EmulatorDep) -> Response:
    """COMPLETE (promote in the background), ABORT, FAIL or REVERT (delete the batch's rows)."""
    batch = batch_or_404(emu, batch_id)
    status = batch["status"]
    if action == "COMPLETE":
        if status == "loading":
            _set_status(emu, batch_id, "staging")
            emu.submit(promote, emu, batch_id)
        elif status not in ("staging", "success"):
            raise bad_request(f"batch {batch_id} is {status} and cannot be completed", "INGEST", _INVALID)
    elif action == "ABORT":
        if status != "loading":
            raise bad_request(f"batch {batch_id} is {status}; only a loading batch can be aborted", "INGEST", _INVALID)
        _set_status(emu, batch_id, "aborted")
    elif action == "FAIL":
        _set_status(emu, batch_id, "failed")
    elif action == "REVERT":
        revert(emu, batch)
    else:
        raise bad_request(f"unknown batch action {action!r}", "INGEST", _INVALID)
    return Response(status_code=200)


def revert(emu: Emulator, batch: dict[str, Any]) -> None:
    """Delete a successful batch's rows from its dataset; the batch becomes ``deleted``."""
    if batch["status"] not in ("success", "active"):
        raise bad_request(
            f"batch {batch['id']} is {batch['status']}; only a successful batch can be reverted", "INGEST", _INVALID
        )
    dataset = dataset_or_404(emu, batch["relatedObjects"][0]["id"])
    with emu.engine.connect() as conn:
        emu.engine.fetchall(conn, f"DELETE FROM {identifier(table_of(dataset))} WHERE _emu_batch = %s", [batch["id"]])
    _set_status(emu, batch["id"], "deleted")


def read_file(path: Path) -> dict[str, pa.Array]:
    """Path columns of an uploaded file: Parquet (by its magic bytes) or JSON (an array or JSON lines)."""
    data = path.read_bytes()
    if data[:4] == b"PAR1":
        return arrow_to_paths(pq.read_table(io.BytesIO(data)))
    try:
        return json_to_paths(parse_json_records(data))
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, XdmError):
            raise
        raise XdmError(f"file '{path.name}' is neither Parquet nor valid JSON: {exc}") from None


def _chunks(files: list[Path], leaves: dict[str, str], columns: list[Column], batch_id: str) -> Iterator[pa.Table]:
    """Each uploaded file as a flat table of the dataset's columns."""
    for path in files:
        yield conform(read_file(path), leaves, columns, batch_id)


def promote(emu: Emulator, batch_id: str) -> None:
    """Flatten and ingest a completed batch's files into its dataset, then record success or failure."""
    delay = float(emu.faults.get("batch_delay_seconds", 0))
    if delay:
        time.sleep(delay)
    batch = batch_or_404(emu, batch_id)
    folder = batch_folder(emu, batch_id)
    files = (
        sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".partial"))
        if folder.exists()
        else []
    )
    try:
        if emu.faults.get("fail_batches"):
            raise BatchFailure("INGEST-1500-500", "batch failed by the emulator's fail_batches fault")
        if not files:
            raise BatchFailure("106", "Dataset file is empty. Please upload file with data.")
        dataset = dataset_or_404(emu, batch["relatedObjects"][0]["id"])
        leaves, columns = dataset_columns(emu, dataset)
        spec = DatasetSpec(table_of(dataset), tuple(columns))
        record = emu.platform.ingest(spec, _chunks(files, leaves, columns, batch_id))
    except BatchFailure as exc:
        _fail(emu, batch, exc.code, exc.description)
        return
    except XdmError as exc:
        _fail(emu, batch, "INGEST-1212-400", str(exc))
        return
    except Exception as exc:  # any other failure of promotion fails the batch, as on AEP
        logger.exception("batch %s failed", batch_id)
        _fail(emu, batch, "INGEST-1500-500", f"{type(exc).__name__}: {exc}")
        return
    size = sum(path.stat().st_size for path in files)
    metrics = {
        "inputFileCount": len(files),
        "inputByteSize": size,
        "inputRecordCount": record.rows,
        "inputRecordSize": record.rows,
        "outputRecordCount": record.rows,
        "outputRecordSize": record.rows,
        "outputByteSize": size,
        "partitionCount": 1,
        "failedRecordCount": 0,
    }
    _set_status(emu, batch_id, "success", completed=now_ms(), metrics=metrics, errors=[])
    _mark_dataset(emu, batch, "success")
    shutil.rmtree(folder, ignore_errors=True)


def _fail(emu: Emulator, batch: dict[str, Any], code: str, description: str) -> None:
    """Record a failed batch with AEP's error shape."""
    errors = [{"code": code, "description": description, "rows": []}]
    _set_status(emu, batch["id"], "failed", completed=now_ms(), errors=errors)
    _mark_dataset(emu, batch, "failed")


def _mark_dataset(emu: Emulator, batch: dict[str, Any], status: str) -> None:
    """Record a batch's outcome on its dataset (``lastBatchId``, ``lastBatchStatus``)."""

    def change(dataset: dict[str, Any]) -> None:
        dataset.update(lastBatchId=batch["id"], lastBatchStatus=status, updated=now_ms())

    emu.store.update("datasets", batch["relatedObjects"][0]["id"], change)


def resume_batches(emu: Emulator) -> None:
    """Promote again the batches a previous run left in ``staging`` (a restart loses nothing)."""
    for batch in emu.store.all("batches"):
        if batch["status"] == "staging":
            emu.submit(promote, emu, batch["id"])
