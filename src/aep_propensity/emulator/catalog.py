"""Catalog (``/data/foundation/catalog``): datasets and batches, answered as maps keyed by id.

Each dataset has a Query Service table named after it (lower-cased, every character outside
``[a-z0-9_]`` replaced by ``_``, a suffix when taken), recorded in ``tags["adobe/pqs/table"]``.
Its columns are the flattened leaves of its schema plus the hidden ``_emu_batch`` column.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import psycopg2
from fastapi import APIRouter, Query

from aep_propensity.platform.core.port import ARROW_TYPES, Column, DatasetSpec, PlatformError
from aep_propensity.platform.core.sql import identifier

from .errors import bad_request, of_kind
from .registry import find, schema_leaves
from .service import Emulator, EmulatorDep, JsonBody, JsonObject, apply_json_patch, now_ms
from .xdm_schema import BATCH_COLUMN, columns_of

router = APIRouter(prefix="/data/foundation/catalog")

_NOT_FOUND = "CAT-1404-404"
_INVALID = "CAT-1400-400"
PQS_TAG = "adobe/pqs/table"
#: Table-name prefixes of the local platform's own tables (its ledger and staging tables).
RESERVED_PREFIXES = ("ledger_", "_batch_")
#: Catalog paging, as on AEP: 20 objects by default, at most 100 (the ``limit`` parameter).
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def table_of(dataset: dict[str, Any]) -> str:
    """The Query Service table of a dataset (from its tag)."""
    return str(dataset["tags"][PQS_TAG][0])


def dataset_or_404(emu: Emulator, dataset_id: str) -> dict[str, Any]:
    """A dataset by id, or Catalog's 404 problem document."""
    return emu.store.get_or_404("datasets", dataset_id, "dataset", "CATALOG", _NOT_FOUND)


def free_table_name(emu: Emulator, name: str) -> str:
    """The table name for a dataset called ``name``, with a numeric suffix if another dataset has it."""
    base = re.sub(r"[^a-z0-9_]", "_", name.lower())
    base = base if re.match(r"^[a-z_]", base) else f"_{base}"
    base = base[:56]
    taken = {table_of(dataset) for dataset in emu.store.all("datasets")}
    candidate, suffix = base, 1
    while candidate in taken or candidate.startswith(RESERVED_PREFIXES):
        candidate, suffix = f"{base}_{suffix}", suffix + 1
    return candidate


def dataset_columns(emu: Emulator, dataset: dict[str, Any]) -> tuple[dict[str, str], list[Column]]:
    """The schema leaves of a dataset and the columns of its table (creating or widening the table)."""
    leaves = schema_leaves(emu, dataset["schemaRef"]["id"])
    wanted = [*columns_of(leaves), Column(BATCH_COLUMN, "string")]
    return leaves, ensure_table(emu, table_of(dataset), wanted)


def ensure_table(emu: Emulator, table: str, wanted: list[Column]) -> list[Column]:
    """Create ``table`` with ``wanted`` columns, or add the ones it lacks; returns its columns in order."""
    with emu.engine.connect() as conn:
        existing = emu.engine.table_columns(conn, table)
        if existing is not None:
            names = {name for name, _ in existing}
            for column in wanted:
                if column.name not in names:
                    emu.engine.fetchall(
                        conn,
                        f"ALTER TABLE {identifier(table)} ADD COLUMN {identifier(column.name)} "
                        f"{emu.engine.sql_type(column)}",
                    )
            existing_columns = [Column(name, logical_type(emu, sql_type)) for name, sql_type in existing]
            return existing_columns + [column for column in wanted if column.name not in names]
    emu.platform.ingest(DatasetSpec(table, tuple(wanted)), [])
    return wanted


def logical_type(emu: Emulator, sql_type: str) -> str:
    """The logical type of a column PostgreSQL's information schema reports as ``sql_type``, read
    backwards from the engine's own type map (:meth:`PostgresEngine.sql_type`)."""
    for logical in ARROW_TYPES:
        if emu.engine.sql_type(Column("column", logical)).lower() == sql_type.lower():  # type: ignore[arg-type]
            return logical
    raise ValueError(f"column type {sql_type!r} has no logical type")


def drop_table(emu: Emulator, table: str) -> None:
    """Drop a dataset's table if it exists."""
    with emu.engine.connect() as conn:
        emu.engine.fetchall(conn, f"DROP TABLE IF EXISTS {identifier(table)}")


def new_dataset(emu: Emulator, body: dict[str, Any], table: str) -> dict[str, Any]:
    """Store a dataset object for ``body`` with its table tag; returns it."""
    dataset = copy.deepcopy(body)
    tags = dict(dataset.get("tags") or {})
    tags[PQS_TAG] = [table]
    dataset_id = uuid.uuid4().hex[:24]
    dataset.update(
        {
            "id": dataset_id,
            "tags": tags,
            "imsOrg": emu.config.org_id,
            "state": "DRAFT",
            "version": "1.0.0",
            "created": now_ms(),
            "updated": now_ms(),
            "createdClient": emu.config.client_id,
            "namespace": "ACP",  # no lastBatchId/lastBatchStatus until a batch lands (not nullable in the spec)
        }
    )
    return emu.store.put("datasets", dataset_id, dataset)


def _window(items: list[dict[str, Any]], start: int, limit: int) -> dict[str, Any]:
    """Catalog paging: a zero-based ``start`` offset and ``limit`` (1 to 100) items, as an id-keyed map."""
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}", "CATALOG", _INVALID)
    if start < 0:
        raise bad_request("start must be zero or more", "CATALOG", _INVALID)
    return {item["id"]: item for item in items[start : start + limit]}


def _project(item: dict[str, Any], properties: str | None) -> dict[str, Any]:
    """Only the requested ``properties`` of an object (all when none are given)."""
    if not properties:
        return item
    keep = {name.strip() for name in properties.split(",")}
    return {key: value for key, value in item.items() if key in keep or key == "id"}


@router.post("/dataSets", status_code=201)
def create_dataset(body: JsonObject, emu: EmulatorDep) -> list[str]:
    """Create a dataset on a tenant schema; answers ``["@/dataSets/{id}"]``. A dataset whose table cannot be
    made (a name a view holds, a column PostgreSQL refuses) is a 400 and is not kept."""
    of_kind(body.get("name"), str, "name", "CATALOG", _INVALID)
    schema_ref = of_kind(body.get("schemaRef"), dict, "schemaRef", "CATALOG", _INVALID) or {}
    schema_id = of_kind(schema_ref.get("id"), str, "schemaRef.id", "CATALOG", _INVALID)
    if not body.get("name") or not schema_id:
        raise bad_request("a dataset needs a name and schemaRef.id", "CATALOG", _INVALID)
    find(emu, "schemas", schema_id)
    dataset = new_dataset(emu, body, free_table_name(emu, body["name"]))
    try:
        dataset_columns(emu, dataset)
    except BaseException as exc:  # a dataset without its table is never kept
        emu.store.delete("datasets", dataset["id"])
        if isinstance(exc, ValueError | PlatformError | psycopg2.Error):
            message = f"dataset {body['name']!r} cannot have its table {table_of(dataset)!r}: {exc}"
            raise bad_request(message.strip(), "CATALOG", _INVALID) from None
        raise
    return [f"@/dataSets/{dataset['id']}"]


@router.get("/dataSets")
def list_datasets(
    emu: EmulatorDep,
    limit: int = DEFAULT_LIMIT,
    start: int = 0,
    name: str | None = None,
    properties: str | None = None,
) -> dict[str, Any]:
    """Datasets, optionally by exact name, as an id-keyed map."""
    datasets = [d for d in emu.store.all("datasets") if name is None or d["name"] == name]
    return {key: _project(value, properties) for key, value in _window(datasets, start, limit).items()}


@router.get("/dataSets/{dataset_id}")
def get_dataset(dataset_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One dataset, as ``{id: dataset}``."""
    return {dataset_id: dataset_or_404(emu, dataset_id)}


@router.patch("/dataSets/{dataset_id}")
def patch_dataset(dataset_id: str, body: JsonBody, emu: EmulatorDep) -> list[str]:
    """JSON-Patch a dataset (e.g. ``add /tags/unifiedProfile ["enabled:true"]``)."""
    dataset = dataset_or_404(emu, dataset_id)
    patched = apply_json_patch(dataset, body, "CATALOG", _INVALID)
    tags = patched.get("tags")
    if not isinstance(tags, dict) or tags.get(PQS_TAG) != [table_of(dataset)] or patched.get("id") != dataset_id:
        raise bad_request("a dataset's id and Query Service table cannot change", "CATALOG", _INVALID)
    patched["updated"] = now_ms()
    emu.store.put("datasets", dataset_id, patched)
    return [f"@/dataSets/{dataset_id}"]


@router.delete("/dataSets/{dataset_id}")
def delete_dataset(dataset_id: str, emu: EmulatorDep) -> list[str]:
    """Delete a dataset and its table."""
    dataset = dataset_or_404(emu, dataset_id)
    drop_table(emu, table_of(dataset))
    emu.store.delete("datasets", dataset_id)
    return [f"@/dataSets/{dataset_id}"]


@router.get("/batches")
def list_batches(
    emu: EmulatorDep,
    limit: int = DEFAULT_LIMIT,
    start: int = 0,
    status: str | None = None,
    orderBy: str = "desc:created",  # noqa: N803 - AEP's parameter name
    dataSet: str | None = Query(None),  # noqa: N803 - AEP's parameter name
    createdAfter: int | None = None,  # noqa: N803 - AEP's parameter name
) -> dict[str, Any]:
    """Batches filtered by dataset, status and creation time, as an id-keyed map."""
    batches = [
        batch
        for batch in emu.store.all("batches")
        if (dataSet is None or batch["relatedObjects"][0]["id"] == dataSet)
        and (status is None or batch["status"] == status)
        and (createdAfter is None or batch["created"] > createdAfter)
    ]
    batches.sort(key=lambda batch: batch["created"], reverse=orderBy.startswith("desc"))
    return _window(batches, start, limit)


@router.get("/batches/{batch_id}")
def get_batch(batch_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One batch, as ``{id: batch}``."""
    return {batch_id: emu.store.get_or_404("batches", batch_id, "batch", "CATALOG", _NOT_FOUND)}
