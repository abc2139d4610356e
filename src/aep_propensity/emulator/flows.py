"""Flow Service (``/data/foundation/flowservice``): connections, flows and their runs' records.

Connections and flows are stored as given, each with an ``etag``; PATCH on a flow needs the
current etag in ``If-Match``; DELETE removes a connection or flow (a deleted flow no longer runs,
and a run started before the deletion fails). Only Data Landing Zone flows (flow spec
``cd2fc47e-...``) can be created; they run through ad-hoc runs (:mod:`.flow_runs`), which are
polled through ``GET /runs?property=flowId==<id>``.

A flow (created or patched) is refused with a 400 when it crosses Adobe's guardrails for destinations
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/guardrails): more than
``max_audiences`` (250) segment selectors, more than ``max_attributes`` (50) profile selectors, or a
profile selector that is not a scalar profile attribute (a field of the union profile, or under
``identityMap``): event fields, arrays and maps cannot be exported. The limits are :data:`.config.LIMITS`.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Header, Response

from .errors import bad_request, not_found, of_kind, service_error
from .ingestion import limit
from .profiles import union_profile
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
    if not (of_kind(body.get("connectionSpec"), dict, "connectionSpec", "FLOW", _INVALID) or {}).get("id"):
        raise bad_request("connectionSpec.id is required", "FLOW", _INVALID)
    return _new(emu, kind, body)


def create_flow(body: dict[str, Any], emu: Emulator) -> dict[str, Any]:
    """Create a flow between existing source and target connections; only DLZ flows are supported."""
    if (of_kind(body.get("flowSpec"), dict, "flowSpec", "FLOW", _INVALID) or {}).get("id") != DLZ_FLOW_SPEC:
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
    check_guardrails(emu, body)
    return _new(emu, "flows", body)


def selectors(flow: dict[str, Any], kind: str) -> list[Any]:
    """The ``segmentSelectors`` or ``profileSelectors`` selectors of a flow's first transformation (none
    where the flow's body has another shape)."""
    transformations = flow.get("transformations")
    first = transformations[0] if isinstance(transformations, list) and transformations else None
    params = first.get("params") if isinstance(first, dict) else None
    group = params.get(kind) if isinstance(params, dict) else None
    found = group.get("selectors") if isinstance(group, dict) else None
    return found if isinstance(found, list) else []


def selector_path(selector: Any) -> str:
    """A profile selector's XDM path (``value.path``), or an empty string."""
    value = selector.get("value") if isinstance(selector, dict) else None
    return str((value or {}).get("path") or "") if isinstance(value, dict) else ""


def profile_paths(emu: Emulator) -> set[str]:
    """The scalar attributes of the union profile (none without a profile-enabled dataset)."""
    try:
        return set(union_profile(emu).paths)
    except ValueError:
        return set()


def check_guardrails(emu: Emulator, flow: dict[str, Any]) -> None:
    """Refuse (400) a flow past ``max_audiences`` audiences or ``max_attributes`` attributes, or mapping an
    attribute that is not a scalar profile attribute (see the module)."""
    audiences, attributes = selectors(flow, "segmentSelectors"), selectors(flow, "profileSelectors")
    for mapped, what in ((audiences, "audiences"), (attributes, "attributes")):
        most = limit(emu, f"max_{what}")
        if len(mapped) > most:
            raise bad_request(
                f"{len(mapped)} {what} mapped: a destination dataflow takes at most {most} {what}", "FLOW", _INVALID
            )
    paths = [selector_path(selector) for selector in attributes]
    known = profile_paths(emu) if paths else set()
    refused = [path for path in paths if path not in known and not path.startswith("identityMap.")]
    if refused:
        raise bad_request(
            f"attributes {refused} are not scalar profile attributes: only those can be exported "
            "(no event fields, arrays or maps except identityMap)",
            "FLOW",
            _INVALID,
        )


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


@router.patch(FLOWS + "/flows/{flow_id}")
def patch_flow(flow_id: str, body: JsonBody, emu: EmulatorDep, if_match: str | None = Header(None)) -> dict[str, Any]:
    """JSON-Patch a flow (e.g. add segment and profile selectors); ``If-Match`` must carry its etag. The
    patched flow must keep within the guardrails (:func:`check_guardrails`); 200, as the Flow Service's specs
    answer."""
    flow = get_object(emu, "flows", flow_id)
    if not if_match:
        raise bad_request("If-Match header with the flow's etag is required", "FLOW", _INVALID)
    if if_match.strip('"') != flow["etag"].strip('"'):
        raise service_error(412, "FLOW-1412-412", "If-Match does not match the flow's current etag", "FLOW")
    patched = apply_json_patch(flow, body, "FLOW", _INVALID)
    check_guardrails(emu, patched)
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
