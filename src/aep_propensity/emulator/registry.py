"""Schema Registry (``/data/foundation/schemaregistry``): tenant id, field groups, schemas, descriptors."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from .errors import bad_request, not_found, of_kind, service_error
from .service import Emulator, EmulatorDep, JsonBody, JsonObject, apply_json_patch, matches_property, now_ms
from .xdm_schema import (
    CLASSES,
    STANDARD_FIELD_GROUPS,
    XdmError,
    check_tenant_fields,
    columns_of,
    field_group_leaves,
)

router = APIRouter(prefix="/data/foundation/schemaregistry")

_NOT_FOUND = "XDM-1010-404"
_INVALID = "XDM-1000-400"
_NOT_ACCEPTABLE = "XDM-1006-406"


def _require_xed(request: Request) -> None:
    """Schema Registry lookups need an XED ``Accept`` header (``application/vnd.adobe.xed+json``), as on AEP."""
    if "application/vnd.adobe.xed" not in request.headers.get("accept", ""):
        raise service_error(
            406, _NOT_ACCEPTABLE, "Accept header must be application/vnd.adobe.xed+json (or a versioned xed type)"
        )


def _key(ident: str) -> str:
    """The stored key (the trailing hex) of a ``$id`` URL or ``meta:altId``."""
    return ident.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def find(emu: Emulator, kind: str, ident: str) -> dict[str, Any]:
    """A tenant field group or schema by ``$id`` or ``meta:altId``, or a 404 problem document."""
    body = emu.store.get(kind, _key(ident))
    if body is None or ident not in (body["$id"], body["meta:altId"], _key(ident)):
        raise not_found(kind[:-1] if kind.endswith("s") else kind, ident, "XDM", _NOT_FOUND)
    return body


def _ref_leaves(emu: Emulator, ref: str) -> dict[str, str]:
    """The leaves a class or field group reference brings; unknown references are a 400."""
    if ref in CLASSES:
        return dict(CLASSES[ref])
    if ref in STANDARD_FIELD_GROUPS:
        return dict(STANDARD_FIELD_GROUPS[ref])
    group = emu.store.get("fieldgroups", _key(ref))
    if group is None or group["$id"] != ref:
        raise bad_request(f"unknown class or field group reference '{ref}'", "XDM", _INVALID)
    return field_group_leaves(group)


def schema_refs(schema: dict[str, Any]) -> list[str]:
    """The ``$ref`` of every ``allOf`` item of a schema."""
    return [item["$ref"] for item in schema.get("allOf", []) if isinstance(item, dict) and "$ref" in item]


def leaves_of_refs(emu: Emulator, refs: list[str]) -> dict[str, str]:
    """The leaves (path -> XDM type) of a class plus field groups."""
    leaves: dict[str, str] = {}
    for ref in refs:
        leaves.update(_ref_leaves(emu, ref))
    return leaves


def schema_leaves(emu: Emulator, schema_id: str) -> dict[str, str]:
    """The leaves of a stored tenant schema."""
    return leaves_of_refs(emu, schema_refs(find(emu, "schemas", schema_id)))


def primary_identity(emu: Emulator, schema_id: str) -> tuple[str, str] | None:
    """``(leaf path, namespace)`` of the schema's primary identity descriptor, if it has one."""
    for descriptor in emu.store.all("descriptors"):
        if (
            descriptor.get("@type") == "xdm:descriptorIdentity"
            and descriptor.get("xdm:sourceSchema") == schema_id
            and descriptor.get("xdm:isPrimary")
        ):
            return pointer_to_path(descriptor["xdm:sourceProperty"]), str(descriptor.get("xdm:namespace", ""))
    return None


def pointer_to_path(pointer: str) -> str:
    """A descriptor's JSON pointer (``/_acme/userid``) as a dotted leaf path (``_acme.userid``)."""
    return ".".join(part for part in pointer.split("/") if part)


def _stamp(body: dict[str, Any], emu: Emulator, resource: str) -> dict[str, Any]:
    """Give a new tenant resource its ids and registry metadata."""
    hex_id = uuid.uuid4().hex
    tenant = emu.config.tenant
    body.update(
        {
            "$id": f"https://ns.adobe.com/{tenant}/{resource}/{hex_id}",
            "meta:altId": f"_{tenant}.{resource}.{hex_id}",
            "meta:resourceType": resource,
            "meta:containerId": "tenant",
            "meta:tenantNamespace": f"_{tenant}",
            "version": "1.0",
            "meta:registryMetadata": {"repo:createdDate": now_ms(), "repo:lastModifiedDate": now_ms()},
        }
    )
    return body


def _page(results: list[dict[str, Any]], prop: str | None = None) -> dict[str, Any]:
    """A Schema Registry list answer, optionally filtered by ``property=key==value``."""
    results = [item for item in results if matches_property(item, prop)]
    return {"results": results, "_page": {"orderby": "", "next": None, "count": len(results)}, "_links": {}}


@router.get("/stats")
def stats(emu: EmulatorDep) -> dict[str, Any]:
    """The tenant id, resource counts and each class's schemas."""
    schemas = emu.store.all("schemas")
    return {
        "imsOrg": emu.config.org_id,
        "tenantId": emu.config.tenant,
        "counts": {
            "schemas": len(schemas),
            "mixins": len(emu.store.all("fieldgroups")),
            "datatypes": 0,
            "classes": 0,
            "unions": sum("union" in s.get("meta:immutableTags", []) for s in schemas),
        },
        "recentlyCreatedResources": [],
        "recentlyUpdatedResources": [],
        "classUsage": class_usage(schemas),
        "fieldUsage": {},
    }


def class_usage(schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which schemas use each class, as the stats answer lists them (``$id``, ``title``, ``numberOfSchemas``,
    ``schemas``)."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for schema in schemas:
        by_class.setdefault(str(schema.get("meta:class", "")), []).append(schema)
    return [
        {
            "$id": class_id,
            "title": class_id.rsplit("/", 1)[-1],
            "numberOfSchemas": len(members),
            "schemas": [
                {"$id": s.get("$id"), "title": s.get("title", ""), "description": s.get("description", "")}
                for s in members
            ],
        }
        for class_id, members in sorted(by_class.items())
    ]


@router.post("/tenant/fieldgroups", status_code=201)
@router.post("/tenant/mixins", status_code=201)
def create_field_group(body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Create a tenant field group; its fields must sit under ``_{tenant}``."""
    if not body.get("title"):
        raise bad_request("a field group needs a title", "XDM", _INVALID)
    try:
        leaves = field_group_leaves(body)
        check_tenant_fields(leaves, emu.config.tenant)
        columns_of(leaves)
    except (XdmError, ValueError) as exc:
        raise bad_request(str(exc), "XDM", _INVALID) from None
    group = _stamp(copy.deepcopy(body), emu, "mixins")
    return emu.store.put("fieldgroups", _key(group["$id"]), group)


@router.get("/tenant/fieldgroups")
@router.get("/tenant/mixins")
def list_field_groups(emu: EmulatorDep, property: str | None = None) -> dict[str, Any]:  # noqa: A002
    """Tenant field groups (``property=title==...`` filters)."""
    return _page(emu.store.all("fieldgroups"), property)


@router.get("/tenant/fieldgroups/{ident:path}")
@router.get("/tenant/mixins/{ident:path}")
def get_field_group(ident: str, request: Request, emu: EmulatorDep) -> dict[str, Any]:
    """One tenant field group by ``$id`` or ``meta:altId``."""
    _require_xed(request)
    return find(emu, "fieldgroups", ident)


@router.delete("/tenant/fieldgroups/{ident:path}", status_code=204)
def delete_field_group(ident: str, emu: EmulatorDep) -> Response:
    """Delete a tenant field group."""
    emu.store.delete("fieldgroups", _key(find(emu, "fieldgroups", ident)["$id"]))
    return Response(status_code=204)


def _check_schema(emu: Emulator, schema: dict[str, Any]) -> None:
    """A schema extends exactly one known class and known field groups whose leaves flatten cleanly."""
    of_kind(schema.get("allOf"), list, "allOf", "XDM", _INVALID)
    refs = schema_refs(schema)
    if not all(isinstance(ref, str) for ref in refs):
        raise bad_request("every $ref of allOf must be a string", "XDM", _INVALID)
    classes = [ref for ref in refs if ref in CLASSES]
    if len(classes) != 1:
        raise bad_request(f"a schema must reference exactly one class of {sorted(CLASSES)}", "XDM", _INVALID)
    try:
        columns_of(leaves_of_refs(emu, refs))
    except XdmError as exc:
        raise bad_request(str(exc), "XDM", _INVALID) from None
    schema["meta:class"] = classes[0]
    schema["meta:extends"] = refs


@router.post("/tenant/schemas", status_code=201)
def create_schema(body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Create a tenant schema from a class and field groups."""
    if not body.get("title"):
        raise bad_request("a schema needs a title", "XDM", _INVALID)
    schema = copy.deepcopy(body)
    _check_schema(emu, schema)
    schema.setdefault("meta:immutableTags", [])
    schema = _stamp(schema, emu, "schemas")
    return emu.store.put("schemas", _key(schema["$id"]), schema)


@router.get("/tenant/schemas")
def list_schemas(emu: EmulatorDep, property: str | None = None) -> dict[str, Any]:  # noqa: A002
    """Tenant schemas (``property=title==...`` filters)."""
    return _page(emu.store.all("schemas"), property)


@router.get("/tenant/schemas/{ident:path}")
def get_schema(ident: str, request: Request, emu: EmulatorDep) -> dict[str, Any]:
    """One tenant schema by ``$id`` or ``meta:altId``."""
    _require_xed(request)
    return find(emu, "schemas", ident)


@router.patch("/tenant/schemas/{ident:path}")
def patch_schema(ident: str, body: JsonBody, emu: EmulatorDep) -> dict[str, Any]:
    """JSON-Patch a schema: e.g. ``add /meta:immutableTags ["union"]`` or ``add /allOf/-`` a field group."""
    schema = find(emu, "schemas", ident)
    patched = apply_json_patch(schema, body, "XDM", _INVALID)
    _check_schema(emu, patched)
    for key in ("$id", "meta:altId"):
        patched[key] = schema[key]
    return emu.store.put("schemas", _key(schema["$id"]), patched)


@router.delete("/tenant/schemas/{ident:path}", status_code=204)
def delete_schema(ident: str, emu: EmulatorDep) -> Response:
    """Delete a tenant schema."""
    emu.store.delete("schemas", _key(find(emu, "schemas", ident)["$id"]))
    return Response(status_code=204)


@router.post("/tenant/descriptors", status_code=201)
def create_descriptor(body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Create a descriptor; an identity descriptor must point at a leaf of an existing schema."""
    source = of_kind(body.get("xdm:sourceSchema"), str, "xdm:sourceSchema", "XDM", _INVALID)
    if not source or "@type" not in body:
        raise bad_request("a descriptor needs @type and xdm:sourceSchema", "XDM", _INVALID)
    leaves = schema_leaves(emu, source)
    if body["@type"] == "xdm:descriptorIdentity":
        path = pointer_to_path(str(body.get("xdm:sourceProperty", "")))
        if path not in leaves:
            raise bad_request(f"xdm:sourceProperty '{path}' is not a field of schema '{source}'", "XDM", _INVALID)
    descriptor = copy.deepcopy(body)
    descriptor.update({"@id": uuid.uuid4().hex, "meta:containerId": "tenant", "version": "1"})
    return emu.store.put("descriptors", descriptor["@id"], descriptor)


@router.get("/tenant/descriptors")
def list_descriptors(emu: EmulatorDep) -> dict[str, Any]:
    """Every descriptor."""
    return _page(emu.store.all("descriptors"))


@router.get("/tenant/descriptors/{ident}")
def get_descriptor(ident: str, emu: EmulatorDep) -> dict[str, Any]:
    """One descriptor by ``@id``."""
    return emu.store.get_or_404("descriptors", ident, "descriptor", "XDM", _NOT_FOUND)
