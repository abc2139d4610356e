"""Batch Ingestion (``/data/foundation/import``): create a batch, upload files, complete, promote.

Files are kept under ``<data-dir>/batches/<batch>/<dataset>/``. COMPLETE moves the batch to
``staging``; a background thread flattens every file by the dataset's schema and ingests them all
as one all-or-nothing batch of the local platform, then marks the batch ``success`` or ``failed``
with AEP's ``errors[{code, description, rows}]``. Every stored row carries its batch id in the
hidden ``_emu_batch`` column, which is how REVERT deletes a batch's rows, and how a promotion
resumed after a restart first removes whatever an interrupted attempt had already committed.

Every action is a compare-and-set of the batch's status in one locked store update: COMPLETE
moves ``loading`` to ``staging`` (and starts the one promotion) and is a harmless retry on a
batch already ``staging`` or ``success``; ABORT and FAIL apply only to a ``loading`` batch (on a
batch in staging, as on AEP, they answer 400); REVERT applies to a successful batch. A batch that
ends failed or aborted has its uploaded files removed from the data folder, as a successful one does.

Uploads are bounded as AEP bounds them (:data:`.config.LIMITS`, lowered by ``--limits`` or the
``limits`` fault): one PUT up to 256 MB and one large-file part up to 512,000,000 bytes (413 beyond);
a large file's size is declared by its first part's ``Content-Range: bytes start-end/size``, every
part must lie within it and declare the same size (400 otherwise); a batch takes at most 25,000 files
and 1 TB (400 on the file that would cross either). AEP documents no error code for these, so the
emulator answers with its Batch Ingestion codes ``INGEST-1400-400`` and ``INGEST-1413-413``.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Header, Request, Response

from aep_propensity.platform.core.port import Column, DatasetSpec, SchemaMismatchError
from aep_propensity.platform.core.sql import identifier

from .catalog import dataset_columns, dataset_or_404, table_of
from .config import LIMITS
from .errors import AEPHTTPError, bad_request, not_found, service_error
from .service import Emulator, EmulatorDep, JsonObject, now_ms, sandbox_of
from .xdm_schema import BATCH_COLUMN, XdmError, arrow_to_paths, conform, json_to_paths, parse_json_records

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/data/foundation/import")

_INVALID = "INGEST-1400-400"
_NOT_FOUND = "INGEST-1404-404"
_TOO_LARGE = "INGEST-1413-413"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)(?:/(\d+|\*))?$")
_DECLARED = "large_files"  # store kind: the size each large file's Content-Range declared
_FORMATS = ("json", "parquet")
_FINAL = ("success", "active", "failed", "aborted", "deleted")


class BatchFailure(Exception):
    """A batch cannot be promoted: AEP's error code and description."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def batch_or_404(emu: Emulator, batch_id: str) -> dict[str, Any]:
    """A batch by id, or Batch Ingestion's 404 problem document."""
    return emu.store.get_or_404("batches", batch_id, "batch", "INGEST", _NOT_FOUND)


def batch_folder(emu: Emulator, batch_id: str) -> Path:
    """Where a batch's uploaded files live."""
    return emu.config.data_dir / "batches" / batch_id


def limit(emu: Emulator, key: str) -> int:
    """One of :data:`.config.LIMITS`: the ``limits`` fault's value, else the configured one."""
    overrides = emu.faults.get("limits") or {}
    return int(overrides.get(key, emu.config.limits.get(key, LIMITS[key])))


def too_large(detail: str) -> AEPHTTPError:
    """A 413 problem document of Batch Ingestion."""
    return service_error(413, _TOO_LARGE, detail, "INGEST")


def _uploaded(folder: Path) -> dict[Path, int]:
    """Each file of a batch folder (a large file still open counted under its final name) and its size."""
    if not folder.exists():
        return {}
    return {
        path.with_name(path.name.removesuffix(".partial")): path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file()
    }


def check_room(emu: Emulator, batch_id: str, target: Path, size: int) -> None:
    """Refuse (400) a file of ``size`` bytes at ``target`` that would take the batch past
    ``files_per_batch`` files or ``batch_bytes`` bytes (the file it replaces not counted)."""
    uploaded = _uploaded(batch_folder(emu, batch_id))
    replaced = uploaded.pop(target, None)
    files, most = limit(emu, "files_per_batch"), limit(emu, "batch_bytes")
    if replaced is None and len(uploaded) >= files:
        raise bad_request(f"batch {batch_id} already has {files:,} files, the most a batch takes", "INGEST", _INVALID)
    total = sum(uploaded.values()) + size
    if total > most:
        raise bad_request(f"batch {batch_id} would hold {total:,} bytes, more than {most:,}", "INGEST", _INVALID)


def _transition(
    emu: Emulator, batch_id: str, action: str, moves: dict[str, str], retries: tuple[str, ...] = (), **fields: Any
) -> bool:
    """Compare-and-set in one locked store update: a batch whose status is a key of ``moves`` takes
    the mapped status (and ``fields``); one in ``retries`` stays as it is; any other is a 400.
    Returns whether the batch moved."""
    moved = False

    def change(batch: dict[str, Any]) -> None:
        nonlocal moved
        status = batch["status"]
        if status in moves:
            batch.update(fields, status=moves[status], updated=now_ms())
            moved = True
        elif status not in retries:
            raise bad_request(f"batch {batch_id} is {status}; {action} is not allowed", "INGEST", _INVALID)

    if emu.store.update("batches", batch_id, change) is None:
        raise not_found("batch", batch_id, "INGEST", _NOT_FOUND)
    return moved


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
        "sandboxName": sandbox_of(request),
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
    """Upload (or replace) one small file of a batch: 201 when new, 200 when replaced; a body over
    ``put_file_bytes`` is a 413 (declared or streamed) and leaves no file."""
    target = _upload_target(emu, batch_id, dataset_id, file_path)
    most = limit(emu, "put_file_bytes")
    declared = int(request.headers.get("content-length") or 0)
    if declared > most:
        raise too_large(f"a file of {declared:,} bytes is over the {most:,} bytes of one PUT: upload it in parts")
    check_room(emu, batch_id, target, declared)
    existed = target.exists()
    written = 0
    with target.open("wb") as sink:
        async for chunk in request.stream():
            written += len(chunk)
            if written > most:
                break
            sink.write(chunk)
    if written > most:
        target.unlink()
        raise too_large(f"the file is over the {most:,} bytes of one PUT: upload it in parts")
    try:
        check_room(emu, batch_id, target, written)  # a body sent without Content-Length, counted as it came
    except AEPHTTPError:
        target.unlink()
        raise
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
    """Write one part (``Content-Range: bytes start-end/size``) of a large file opened with INITIALIZE.
    The first part that gives a size declares the file's; every later part lies within it and gives the
    same size (or none, or ``*``)."""
    target = _upload_target(emu, batch_id, dataset_id, file_path)
    partial = target.with_name(target.name + ".partial")
    if not partial.exists():
        raise bad_request(f"file {file_path!r} was not initialized", "INGEST", _INVALID)
    start, end, size = parse_content_range(content_range)
    key = f"{batch_id}/{dataset_id}/{file_path}"
    declared = (emu.store.get(_DECLARED, key) or {}).get("size")
    if declared is not None and size not in (None, declared):
        raise bad_request(
            f"Content-Range {content_range!r}: the file was declared {declared:,} bytes", "INGEST", _INVALID
        )
    if declared is not None and end >= declared:
        raise bad_request(
            f"Content-Range {content_range!r} lies outside the file's {declared:,} bytes", "INGEST", _INVALID
        )
    most = limit(emu, "part_bytes")
    if end - start + 1 > most:
        raise too_large(f"a part of {end - start + 1:,} bytes is over the {most:,} bytes a part takes")
    if declared is None and size is not None:
        check_room(emu, batch_id, target, size)
        emu.store.put(_DECLARED, key, {"size": size})
    data = await request.body()
    if len(data) != end - start + 1:
        raise bad_request("Content-Range does not match the chunk's length", "INGEST", _INVALID)
    with partial.open("r+b") as sink:
        sink.seek(start)
        sink.write(data)
    return Response(status_code=200)


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``bytes start-end/size`` as its numbers (the size None when absent or ``*``), or a 400 when
    malformed or outside the size it gives."""
    match = _CONTENT_RANGE.match(value.strip())
    if match is None:
        raise bad_request(f"invalid Content-Range {value!r}: expected 'bytes start-end/size'", "INGEST", _INVALID)
    start, end = int(match[1]), int(match[2])
    size = int(match[3]) if match[3] not in (None, "*") else None
    if start > end or (size is not None and end >= size):
        raise bad_request(f"Content-Range {value!r} lies outside the file's declared size", "INGEST", _INVALID)
    return start, end, size


@router.post("/batches/{batch_id}/datasets/{dataset_id}/files/{file_path:path}", status_code=201)
def large_file_action(batch_id: str, dataset_id: str, file_path: str, action: str, emu: EmulatorDep) -> Response:
    """``?action=INITIALIZE`` opens a large file; ``?action=COMPLETE`` closes it."""
    target = _upload_target(emu, batch_id, dataset_id, file_path)
    partial = target.with_name(target.name + ".partial")
    key = f"{batch_id}/{dataset_id}/{file_path}"
    if action == "INITIALIZE":
        check_room(emu, batch_id, target, 0)
        emu.store.delete(_DECLARED, key)
        partial.write_bytes(b"")
    elif action == "COMPLETE":
        if not partial.exists():
            raise bad_request(f"file {file_path!r} was not initialized", "INGEST", _INVALID)
        declared = (emu.store.get(_DECLARED, key) or {}).get("size")
        if declared is not None and partial.stat().st_size != declared:
            raise bad_request(
                f"file {file_path!r} has {partial.stat().st_size:,} of its declared {declared:,} bytes",
                "INGEST",
                _INVALID,
            )
        emu.store.delete(_DECLARED, key)
        partial.replace(target)
    else:
        raise bad_request(f"unknown file action {action!r}", "INGEST", _INVALID)
    return Response(status_code=201)


@router.post("/batches/{batch_id}")
def batch_action(batch_id: str, action: str, emu: EmulatorDep) -> Response:
    """COMPLETE (promote in the background), ABORT, FAIL or REVERT (delete the batch's rows)."""
    if action == "COMPLETE":
        if _transition(emu, batch_id, action, {"loading": "staging"}, retries=("staging", "success", "active")):
            submit_promotion(emu, batch_id)
    elif action == "ABORT":
        _transition(emu, batch_id, action, {"loading": "aborted"})
        shutil.rmtree(batch_folder(emu, batch_id), ignore_errors=True)
    elif action == "FAIL":
        _transition(emu, batch_id, action, {"loading": "failed"}, completed=now_ms())
        shutil.rmtree(batch_folder(emu, batch_id), ignore_errors=True)
    elif action == "REVERT":
        revert(emu, batch_or_404(emu, batch_id))
    else:
        raise bad_request(f"unknown batch action {action!r}", "INGEST", _INVALID)
    return Response(status_code=200)


def revert(emu: Emulator, batch: dict[str, Any]) -> None:
    """Delete a successful batch's rows from its dataset; the batch becomes ``deleted``."""
    if batch["status"] not in ("success", "active"):
        raise bad_request(
            f"batch {batch['id']} is {batch['status']}; only a successful batch can be reverted", "INGEST", _INVALID
        )
    delete_rows(emu, table_of(dataset_or_404(emu, batch["relatedObjects"][0]["id"])), batch["id"])
    _transition(emu, batch["id"], "REVERT", {"success": "deleted", "active": "deleted"}, retries=("deleted",))


def replayed(emu: Emulator, batch: dict[str, Any]) -> list[str]:
    """The successful batches of the same dataset that this batch replaces (``replay.predecessors``, AEP's
    batch replay): their rows are deleted in the transaction that makes this batch's rows visible."""
    dataset_id = batch["relatedObjects"][0]["id"]
    replaced = []
    for predecessor in (batch.get("replay") or {}).get("predecessors") or []:
        earlier = emu.store.get("batches", str(predecessor))
        if earlier and earlier["relatedObjects"][0]["id"] == dataset_id and earlier["status"] in ("success", "active"):
            replaced.append(earlier["id"])
    return replaced


def delete_rows(emu: Emulator, table: str, batch_id: str) -> None:
    """Delete a batch's rows (by the hidden ``_emu_batch`` column) from a dataset's table."""
    with emu.engine.connect() as conn:
        emu.engine.fetchall(conn, f"DELETE FROM {identifier(table)} WHERE {identifier(BATCH_COLUMN)} = %s", [batch_id])


def submit_promotion(emu: Emulator, batch_id: str) -> None:
    """Promote a staging batch in the background; if the promotion dies, the batch fails."""

    def crashed(message: str) -> None:
        _fail(emu, batch_or_404(emu, batch_id), "INGEST-1500-500", message)

    emu.submit(promote, emu, batch_id, on_crash=crashed)


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
    """Flatten and ingest a staging batch's files into its dataset, then record success or failure.

    Idempotent: the batch's rows are deleted before they are ingested, so a promotion resumed after
    a restart (rows committed, status not yet updated) never duplicates them. When the emulator
    stops during the ``batch_delay_seconds`` fault, the batch stays ``staging`` and resumes at the
    next start."""
    delay = float(emu.faults.get("batch_delay_seconds", 0))
    if delay and not emu.sleep(delay):
        return
    batch = emu.store.get("batches", batch_id)
    if batch is None or batch["status"] != "staging":
        return
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
        delete_rows(emu, spec.name, batch_id)
        predecessors = replayed(emu, batch)
        record = emu.platform.ingest(
            spec,
            _chunks(files, leaves, columns, batch_id),
            retire=(BATCH_COLUMN, predecessors) if predecessors else None,
        )
    except BatchFailure as exc:
        _fail(emu, batch, exc.code, exc.description)
        return
    except (XdmError, SchemaMismatchError) as exc:
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
    if _transition(emu, batch_id, "promotion", {"staging": "success"}, completed=now_ms(), metrics=metrics, errors=[]):
        _mark_dataset(emu, batch, "success")
        for predecessor in predecessors:  # their rows went in the batch's own transaction
            _transition(emu, predecessor, "replay", {"success": "deleted", "active": "deleted"}, retries=("deleted",))
    shutil.rmtree(folder, ignore_errors=True)


def _fail(emu: Emulator, batch: dict[str, Any], code: str, description: str) -> None:
    """Record a failed promotion with AEP's error shape (a batch no longer staging keeps its status)."""
    errors = [{"code": code, "description": description, "rows": []}]
    moved = _transition(
        emu,
        batch["id"],
        "failing",
        {"staging": "failed"},
        retries=tuple(_FINAL),
        completed=now_ms(),
        errors=errors,
    )
    if moved:
        _mark_dataset(emu, batch, "failed")
    shutil.rmtree(batch_folder(emu, batch["id"]), ignore_errors=True)


def _mark_dataset(emu: Emulator, batch: dict[str, Any], status: str) -> None:
    """Record a batch's outcome on its dataset (``lastBatchId``, ``lastBatchStatus``)."""

    def change(dataset: dict[str, Any]) -> None:
        dataset.update(lastBatchId=batch["id"], lastBatchStatus=status, updated=now_ms())

    emu.store.update("datasets", batch["relatedObjects"][0]["id"], change)


def resume_batches(emu: Emulator) -> None:
    """Promote again the batches a previous run left in ``staging`` (a restart loses nothing)."""
    for batch in emu.store.all("batches"):
        if batch["status"] == "staging":
            submit_promotion(emu, batch["id"])
