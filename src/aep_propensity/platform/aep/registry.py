"""Schema Registry (``/data/foundation/schemaregistry``): the sandbox's tenant, and each dataset's schema.

The tenant id comes from ``GET /stats`` once per instance (a configured tenant must match it). A
dataset's schema is got or created by title with its tenant field group (the titles carry a digest of
their content, see :class:`~.xdm.XdmMapping`), then its primary identity descriptor and, for a
profile dataset, its profile (union) tag are made sure of. Every step is checked on every run, so a
run that stopped between two of them is healed by the next.

Adobe's references: the Schema Registry API guide
(https://experienceleague.adobe.com/en/docs/experience-platform/xdm/api/overview), descriptors
(https://experienceleague.adobe.com/en/docs/experience-platform/xdm/api/descriptors) and enabling a
schema for Real-Time Customer Profile
(https://experienceleague.adobe.com/en/docs/experience-platform/xdm/tutorials/create-schema-api).
"""

from __future__ import annotations

import logging
from typing import Any

from .client import AEPClient, AEPError
from .contract import SCHEMAS, XDM_V2_JSON, XED_ID_JSON, XED_JSON
from .xdm import XdmMapping, check_tenant

logger = logging.getLogger(__name__)


class SchemaRegistry:
    """The tenant, and the schemas (with field groups, identity descriptors and union tags) of datasets."""

    def __init__(self, client: AEPClient, tenant: str | None = None) -> None:
        self.client = client
        self._tenant = check_tenant(tenant) if tenant else None
        self._tenant_checked = False

    @property
    def tenant(self) -> str:
        """The tenant id (``GET /stats`` once per instance, then cached); a configured tenant must match it."""
        if self._tenant_checked:
            assert self._tenant is not None
            return self._tenant
        actual = self.client.get(f"{SCHEMAS}/stats", headers={"Accept": XED_JSON}).get("tenantId")
        if not actual:
            raise AEPError("GET /stats answered no tenantId: the credential lacks Schema Registry permissions")
        if self._tenant and self._tenant != actual:
            raise AEPError(f"configured tenant {self._tenant!r} differs from the sandbox's tenant {actual!r}")
        self._tenant, self._tenant_checked = actual, True
        return actual

    def schema(self, mapping: XdmMapping, profile_enabled: bool) -> str:
        """The ``$id`` of the dataset's schema, got or created with its field group, then its identity
        descriptor and profile (union) tag made sure of."""
        group = self._find_by_title("fieldgroups", mapping.field_group_title())
        if group is None:
            group = self.client.post(f"{SCHEMAS}/tenant/fieldgroups", mapping.field_group_json())
        schema = self._find_by_title("schemas", mapping.schema_title(group["$id"]))
        if schema is None:
            schema = self.client.post(f"{SCHEMAS}/tenant/schemas", mapping.schema_json(group["$id"]))
        if mapping.identity is not None:
            self._ensure_identity_descriptor(mapping, schema["$id"])
        if profile_enabled:
            self._ensure_union_tag(schema["meta:altId"])
        return schema["$id"]

    def _find_by_title(self, kind: str, title: str) -> dict[str, Any] | None:
        """The tenant ``fieldgroups``/``schemas`` resource titled ``title``, if any."""
        answer = self.client.get(
            f"{SCHEMAS}/tenant/{kind}", params={"property": f"title=={title}"}, headers={"Accept": XED_ID_JSON}
        )
        return next((item for item in answer.get("results", []) if item.get("title") == title), None)

    def _ensure_identity_descriptor(self, mapping: XdmMapping, schema_id: str) -> None:
        """Create the schema's primary identity descriptor unless it already has one."""
        answer = self.client.get(f"{SCHEMAS}/tenant/descriptors", headers={"Accept": XDM_V2_JSON})
        if not any(
            item.get("@type") == "xdm:descriptorIdentity"
            and item.get("xdm:sourceSchema") == schema_id
            and item.get("xdm:isPrimary")
            for item in _descriptor_items(answer)
        ):
            self.client.post(f"{SCHEMAS}/tenant/descriptors", mapping.identity_descriptor(schema_id))
            logger.info("Created the identity descriptor of schema %s", schema_id)

    def _ensure_union_tag(self, alt_id: str) -> None:
        """Enable the schema for Profile (``meta:immutableTags: ["union"]``) unless it already is."""
        schema = self.client.get(f"{SCHEMAS}/tenant/schemas/{alt_id}", headers={"Accept": f"{XED_JSON}; version=1"})
        if "union" not in (schema.get("meta:immutableTags") or []):
            patch = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
            self.client.patch(f"{SCHEMAS}/tenant/schemas/{alt_id}", patch)
            logger.info("Enabled schema %s for Profile", alt_id)


def _descriptor_items(answer: Any) -> list[dict[str, Any]]:
    """The descriptors of a ``GET /tenant/descriptors`` answer: ``{"results": [...]}`` or, in the older
    shape, lists keyed by descriptor type."""
    if isinstance(answer, dict) and isinstance(answer.get("results"), list):
        return [item for item in answer["results"] if isinstance(item, dict)]
    if isinstance(answer, dict):
        return [
            item for items in answer.values() if isinstance(items, list) for item in items if isinstance(item, dict)
        ]
    return []
