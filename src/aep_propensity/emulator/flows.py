"""Flow Service (``/data/foundation/flowservice``): connections, flows and their runs' records.

Connections and flows are stored as given, each with an ``etag``; PATCH on a flow needs the
current etag in ``If-Match``; DELETE removes a connection or flow (a deleted flow no longer runs,
and a run started before the deletion fails). Only Data Landing Zone flows (flow spec
``cd2fc47e-...``) can be created; they run through ad-hoc runs (:mod:`.flow_runs`), which are
polled through ``GET /runs?property=flowId==<id>``.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Header, Response

from .errors import bad_request, not_found, service_error
from .service import Emulator, EmulatorDep, JsonBody, JsonObject, apply_json_patch, matches_property, now_ms

router = APIRouter()
FLOWS = "/data/foundation/flowservice"

DLZ_CONNECTION_SPEC = "10440537-2a7b-4583-ac39-ed38d4b848e8"
DLZ_FLOW_SPEC = "cd2fc47e-e838-4f38-a581-8fff2f99b63a"
DLZ_CONTAINER = "dlz-destination"
_KINDS = {"connections": "connections", "sourceConnections": "sourceconns", "targetConnections": "targetconns"}
_INVALID = "FLOW-1400-400"
_NOT_FOUND = "FLOW-1404-404"


def new_etag() -> str:
    """A fresh quoted etag."""
    return f'"{uuid.uuid4()}"'


def _new(emu: Emulator, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Store a Flow Service object; answer ``{id, etag}``."""
    if not body.get("name"):
        raise bad_request("a name is required", "FLOW", _INVALID)
    item = dict(body)
    item.update(id=str(uuid.uuid4()), etag=new_etag(), createdAt=now_ms(), updatedAt=now_ms(), state="enabled")
    emu.store.put(kind, item["id"], item)
    return {"id": item["id"], "etag": item["etag"]}


def get_object(emu: Emulator, kind: str, ident: str) -> dict[str, Any]:
    """A Flow Service object, or Flow Service's 404 problem document."""
    return emu.store.get_or_404(kind, ident, kind, "FLOW", _NOT_FOUND)


@router.post(FLOWS + "/{collection}", status_code=201)
def create_connection(collection: str, body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Create a base, source or target connection, or a flow."""
    if collection == "flows":
        return create_flow(body, emu)
    kind = _kind(collection)
    if not (body.get("connectionSpec") or {}).get("id"):
        raise bad_request("connectionSpec.id is required", "FLOW", _INVALID)
    return _new(emu, kind, body)


def create_flow(body: dict[str, Any], emu: Emulator) -> dict[str, Any]:
    """Create a flow between existing source and target connections; only DLZ flows are supported."""
    if (body.get("flowSpec") or {}).get("id") != DLZ_FLOW_SPEC:
        raise bad_request(
            f"the emulator runs Data Landing Zone flows only (flow spec {DLZ_FLOW_SPEC})", "FLOW", _INVALID
        )
    for ident in body.get("sourceConnectionIds") or []:
        get_object(emu, "sourceconns", ident)
    targets = body.get("targetConnectionIds") or []
    if len(targets) != 1:
        raise bad_request("a flow needs exactly one target connection", "FLOW", _INVALID)
    get_object(emu, "targetconns", targets[0])
    body.setdefault("transformations", [])
    return _new(emu, "flows", body)


@router.get(FLOWS + "/runs")
def list_runs(emu: EmulatorDep, property: str | None = None) -> dict[str, Any]:  # noqa: A002 - AEP's name
    """Runs, optionally filtered by ``property=flowId==<id>``, newest first."""
    runs = [run for run in reversed(emu.store.all("runs")) if matches_property(run, property)]
    return {"items": runs, "_links": {}}


@router.get(FLOWS + "/runs/{run_id}")
def get_run(run_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One run, as ``{"items": [run]}``."""
    return {"items": [get_object(emu, "runs", run_id)]}


def _kind(collection: str) -> str:
    """The stored kind of a Flow Service collection (``flows`` or a connection collection), or a 404."""
    kind = "flows" if collection == "flows" else _KINDS.get(collection)
    if kind is None:
        raise not_found("collection", collection, "FLOW", _NOT_FOUND)
    return kind


@router.get(FLOWS + "/{collection}")
def list_collection(collection: str, emu: EmulatorDep, property: str | None = None) -> dict[str, Any]:  # noqa: A002
    """Connections or flows, optionally filtered by ``property=key==value``."""
    return {"items": [item for item in emu.store.all(_kind(collection)) if matches_property(item, property)]}


@router.get(FLOWS + "/{collection}/{ident}")
def get_item(collection: str, ident: str, emu: EmulatorDep) -> dict[str, Any]:
    """One connection or flow, as ``{"items": [item]}``."""
    return {"items": [get_object(emu, _kind(collection), ident)]}


@router.patch(FLOWS + "/flows/{flow_id}", status_code=202)
def patch_flow(flow_id: str, body: JsonBody, emu: EmulatorDep, if_match: str | None = Header(None)) -> dict[str, Any]:
    """JSON-Patch a flow (e.g. add segment and profile selectors); ``If-Match`` must carry its etag."""
    flow = get_object(emu, "flows", flow_id)
    if not if_match:
        raise bad_request("If-Match header with the flow's etag is required", "FLOW", _INVALID)
    if if_match.strip('"') != flow["etag"].strip('"'):
        raise service_error(412, "FLOW-1412-412", "If-Match does not match the flow's current etag", "FLOW")
    patched = apply_json_patch(flow, body, "FLOW", _INVALID)
    patched.update(id=flow_id, etag=new_etag(), updatedAt=now_ms())
    emu.store.put("flows", flow_id, patched)
    return {"id": flow_id, "etag": patched["etag"]}


@router.delete(FLOWS + "/{collection}/{ident}", status_code=204)
def delete_item(collection: str, ident: str, emu: EmulatorDep) -> Response:
    """Delete a flow, or a base, source or target connection: 204, or a 404 when unknown."""
    kind = _kind(collection)
    if not emu.store.delete(kind, ident):
        raise not_found(kind, ident, "FLOW", _NOT_FOUND)
    return Response(status_code=204)
