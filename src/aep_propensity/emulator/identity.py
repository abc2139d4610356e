"""Identity namespaces (``/data/core/idnamespace``) and Data Landing Zone credentials."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .errors import bad_request
from .service import EmulatorDep, JsonObject, now_ms

router = APIRouter()

_STANDARD = (
    (4, "ECID", "COOKIE", "Adobe Experience Cloud ID"),
    (6, "Email", "EMAIL", "Email"),
    (0, "CORE", "COOKIE", "Adobe Audience Manager ID"),
    (411, "AdCloud", "COOKIE", "Adobe Advertising Cloud"),
    (16, "Phone", "PHONE", "Phone"),
)
_DLZ_CONTAINERS = {"dlz_destination": "dlz-destination", "user_drop_zone": "dlz-user-container"}


def _namespace(ident: int, code: str, id_type: str, description: str, custom: bool) -> dict[str, Any]:
    """An identity namespace object."""
    return {
        "code": code,
        "id": ident,
        "name": code,
        "idType": id_type,
        "status": "ACTIVE",
        "custom": custom,
        "description": description,
        "createTime": 0,
        "updateTime": 0,
    }


@router.get("/data/core/idnamespace/identities")
def list_namespaces(emu: EmulatorDep) -> list[dict[str, Any]]:
    """The standard namespaces and any custom ones."""
    standard = [_namespace(*row, custom=False) for row in _STANDARD]
    return standard + emu.store.all("namespaces")


@router.post("/data/core/idnamespace/identities")
def create_namespace(body: JsonObject, emu: EmulatorDep) -> dict[str, Any]:
    """Create a custom namespace ``{name, code, idType, description}``."""
    code = body.get("code")
    if not code or not body.get("name"):
        raise bad_request("a namespace needs name and code", "IDENTITY", "IDN-1400-400")
    if any(ns["code"] == code for ns in list_namespaces(emu)):
        raise bad_request(f"namespace code {code!r} already exists", "IDENTITY", "IDN-1400-400")
    ident = 1000 + len(emu.store.all("namespaces"))
    namespace = _namespace(ident, code, body.get("idType", "CROSS_DEVICE"), body.get("description", ""), True)
    namespace.update(name=body["name"], createTime=now_ms(), updateTime=now_ms())
    return emu.store.put("namespaces", str(ident), namespace)


@router.get("/data/foundation/connectors/landingzone/credentials")
def dlz_credentials(emu: EmulatorDep, type: str = "user_drop_zone") -> dict[str, Any]:  # noqa: A002
    """The Data Landing Zone container: a ``file://`` URL of a local folder instead of an Azure SAS URI."""
    container = _DLZ_CONTAINERS.get(type)
    if container is None:
        raise bad_request(f"type must be one of {sorted(_DLZ_CONTAINERS)}", "CONNECTORS", "DLZ-1400-400")
    folder = (emu.config.dlz_root / container).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return {"containerName": container, "SASUri": folder.as_uri()}
