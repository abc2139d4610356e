"""The one mapping between the pipelines' flat datasets and AEP's nested XDM.

The pipelines see flat tables (``experience_events.ecid``, ``web_webpagedetails_pageviews``,
``propensity_scores.score``); AEP stores nested XDM records of a class (profile or experience
event) made of standard field groups plus tenant fields under ``_{tenant}``. For each raw dataset
this module says which XDM path holds each flat column; a column it does not map goes under
``_{tenant}.<camelCase>``. From that one mapping it derives:

- the XDM class, the standard field groups and the tenant field group (its JSON) of a dataset;
- the nested Arrow table (structs) uploaded as Parquet by batch ingestion (:func:`to_nested`);
- an XDM path written in SQL (:func:`path_sql`), either as AEP's Query Service reads it
  (``_acme.userid``) or flattened as BI tools and the local emulator see it (``_acme_userid``:
  the path joined with ``_``, lower-cased; :func:`flat_column` is the one rule);
- the flat view over a dataset's table that gives the pipelines their column names back
  (:func:`flat_view_sql`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from ..core.port import DatasetSpec, LogicalType, check_name

XdmType = Literal["string", "number", "integer", "boolean", "date-time", "date"]

PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
WEB_GROUP = "https://ns.adobe.com/xdm/context/experienceevent-web"
DIRECT_MARKETING_GROUP = "https://ns.adobe.com/xdm/context/experienceevent-directmarketing"
PERSON_GROUP = "https://ns.adobe.com/xdm/context/profile-person-details"
PERSONAL_GROUP = "https://ns.adobe.com/xdm/context/profile-personal-details"
LOYALTY_GROUP = "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details"

#: The leaves (path -> XDM type) that each class and standard field group defines.
STANDARD_LEAVES: dict[str, dict[str, XdmType]] = {
    PROFILE_CLASS: {"_id": "string"},
    EVENT_CLASS: {"_id": "string", "timestamp": "date-time", "eventType": "string"},
    WEB_GROUP: {
        "web.webPageDetails.pageViews.value": "number",
        "web.webPageDetails.name": "string",
        "web.webInteraction.linkClicks.value": "number",
        "web.webInteraction.name": "string",
    },
    DIRECT_MARKETING_GROUP: {
        "directMarketing.sends.value": "number",
        "directMarketing.opens.value": "number",
        "directMarketing.clicks.value": "number",
    },
    PERSON_GROUP: {"person.gender": "string", "person.birthYear": "integer"},
    PERSONAL_GROUP: {"personalEmail.address": "string", "homeAddress.state": "string"},
    LOYALTY_GROUP: {"loyalty.tier": "string", "loyalty.points": "number", "loyalty.joinDate": "date"},
}

#: Where every dataset keeps the person's ECID: the primary identity of the profile and score schemas.
IDENTITY_PATH = "_{tenant}.userid"

#: The raw datasets: their class and where each flat column lives (``{tenant}`` is the tenant).
RAW_DATASETS: dict[str, tuple[str, dict[str, str]]] = {
    "profiles": (
        PROFILE_CLASS,
        {
            "ecid": IDENTITY_PATH,
            "email": "personalEmail.address",
            "gender": "person.gender",
            "birth_year": "person.birthYear",
            "state": "homeAddress.state",
            "loyalty_tier": "loyalty.tier",
            "loyalty_points": "loyalty.points",
            "loyalty_join_date": "loyalty.joinDate",
        },
    ),
    "experience_events": (
        EVENT_CLASS,
        {
            "_id": "_id",
            "ecid": IDENTITY_PATH,
            "eventType": "eventType",
            "timestamp": "timestamp",
            "web_webpagedetails_pageviews": "web.webPageDetails.pageViews.value",
            "web_webinteraction_linkclicks": "web.webInteraction.linkClicks.value",
            "directmarketing_sends": "directMarketing.sends.value",
            "directmarketing_opens": "directMarketing.opens.value",
            "directmarketing_clicks": "directMarketing.clicks.value",
        },
    ),
    "propensity_scores": (
        PROFILE_CLASS,
        {
            "ecid": IDENTITY_PATH,
            "score": "_{tenant}.propensity",
            "decile": "_{tenant}.propensityDecile",
            "converted": "_{tenant}.converted",
            "model_id": "_{tenant}.modelId",
            "run_id": "_{tenant}.runId",
            "scored_at": "_{tenant}.scoredAt",
        },
    ),
}

#: The XDM type of a tenant field holding a flat column of each logical type.
XDM_TYPES: dict[LogicalType, XdmType] = {
    "string": "string",
    "int64": "integer",
    "float64": "number",
    "bool": "boolean",
    "timestamp": "date-time",
    "date": "date",
}

#: How each XDM type travels in Parquet, and the logical type it reads back as.
_ARROW_OF_XDM: dict[XdmType, pa.DataType] = {
    "string": pa.string(),
    "number": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "date-time": pa.timestamp("us"),
    "date": pa.date32(),
}
_LOGICAL_OF_XDM: dict[XdmType, LogicalType] = {xdm: logical for logical, xdm in XDM_TYPES.items()}
_JSON_TYPES: dict[XdmType, dict[str, str]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer", "meta:xdmType": "long"},
    "boolean": {"type": "boolean"},
    "date-time": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
}
_SEGMENT = re.compile(r"^_?[A-Za-z][A-Za-z0-9]*$")
_TENANT = re.compile(r"^[a-z][a-z0-9]*$")


def check_tenant(tenant: str) -> str:
    """Return ``tenant`` if it is a plausible AEP tenant id (lower-case letters and digits)."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ValueError(f"invalid tenant id {tenant!r}: lower-case letters and digits, starting with a letter")
    return tenant


def check_path(path: str) -> str:
    """Return ``path`` if every dot-separated segment is a plain XDM field name, else raise."""
    if not isinstance(path, str) or not all(_SEGMENT.match(part) for part in path.split(".")):
        raise ValueError(f"invalid XDM path {path!r}")
    return path


def camel_case(name: str) -> str:
    """``loyalty_points`` -> ``loyaltyPoints`` (leading underscores dropped: XDM fields may not start with one)."""
    first, *rest = name.strip("_").split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class XdmField:
    """One flat column and the XDM leaf that holds it."""

    column: str
    path: str
    flat_type: LogicalType
    xdm_type: XdmType


@dataclass(frozen=True)
class XdmMapping:
    """A flat dataset as XDM: its class, field groups, tenant and one :class:`XdmField` per column."""

    dataset: str
    tenant: str
    xdm_class: str
    fields: tuple[XdmField, ...]
    identity: XdmField | None

    @property
    def namespace(self) -> str:
        """The tenant's field namespace, ``_{tenant}``."""
        return f"_{self.tenant}"

    @property
    def standard_groups(self) -> tuple[str, ...]:
        """The standard field groups holding at least one of the mapped leaves, in a stable order."""
        return tuple(
            group
            for group, leaves in STANDARD_LEAVES.items()
            if group not in (PROFILE_CLASS, EVENT_CLASS) and any(f.path in leaves for f in self.fields)
        )

    @property
    def tenant_fields(self) -> tuple[XdmField, ...]:
        """The mapped fields under ``_{tenant}``."""
        return tuple(f for f in self.fields if f.path.startswith(self.namespace + "."))

    def field_group_title(self) -> str:
        """The tenant field group's title: names the dataset and a digest of its fields (get-or-create key)."""
        digest = hashlib.sha256(json.dumps(self.field_group_json("")["definitions"], sort_keys=True).encode())
        return f"aep-propensity {self.dataset} fields {digest.hexdigest()[:8]}"

    def field_group_json(self, title: str | None = None) -> dict[str, Any]:
        """The body of ``POST /tenant/fieldgroups`` defining this dataset's tenant fields."""
        properties: dict[str, Any] = {}
        for xdm_field in self.tenant_fields:
            node = properties
            *parents, leaf = xdm_field.path.split(".")
            for part in parents:
                node = node.setdefault(part, {"type": "object", "properties": {}})["properties"]
            node[leaf] = {
                "title": leaf,
                **_JSON_TYPES[xdm_field.xdm_type],
                "description": f"{self.dataset}.{xdm_field.column}",
            }
        return {
            "type": "object",
            "title": self.field_group_title() if title is None else title,
            "description": f"Tenant fields of the aep-propensity dataset {self.dataset}",
            "allOf": [{"$ref": "#/definitions/customFields"}],
            "meta:containerId": "tenant",
            "meta:resourceType": "mixins",
            "meta:xdmType": "object",
            "meta:intendedToExtend": [self.xdm_class],
            "definitions": {"customFields": {"type": "object", "properties": properties}},
        }

    def schema_title(self, field_group_id: str) -> str:
        """The schema's title: the dataset and a digest of its class and field groups (get-or-create key)."""
        refs = [self.xdm_class, *self.standard_groups, field_group_id]
        return f"aep-propensity {self.dataset} {hashlib.sha256(' '.join(refs).encode()).hexdigest()[:8]}"

    def schema_json(self, field_group_id: str) -> dict[str, Any]:
        """The body of ``POST /tenant/schemas``: the class, the standard field groups and the tenant one."""
        refs = [self.xdm_class, *self.standard_groups, field_group_id]
        return {
            "type": "object",
            "title": self.schema_title(field_group_id),
            "description": f"The aep-propensity dataset {self.dataset} as XDM",
            "allOf": [{"$ref": ref, "type": "object", "meta:xdmType": "object"} for ref in refs],
        }

    def identity_descriptor(self, schema_id: str) -> dict[str, Any]:
        """The body of ``POST /tenant/descriptors`` making the identity column the primary ECID."""
        if self.identity is None:
            raise ValueError(f"dataset {self.dataset!r} has no identity column")
        return {
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema_id,
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": "/" + self.identity.path.replace(".", "/"),
            "xdm:namespace": "ECID",
            "xdm:property": "xdm:id",
            "xdm:isPrimary": True,
        }


def identity_path(tenant: str) -> str:
    """The XDM path of the ECID identity for ``tenant`` (``_acme.userid``)."""
    return IDENTITY_PATH.replace("{tenant}", check_tenant(tenant))


def mapping_for(spec: DatasetSpec, tenant: str) -> XdmMapping:
    """The XDM mapping of a flat dataset: a raw dataset's known paths, the rest under ``_{tenant}``."""
    check_tenant(tenant)
    xdm_class, known = RAW_DATASETS.get(spec.name, (PROFILE_CLASS, {}))
    standard = {**STANDARD_LEAVES[xdm_class]}
    for group, leaves in STANDARD_LEAVES.items():
        if group not in (PROFILE_CLASS, EVENT_CLASS):
            standard.update(leaves)
    fields = []
    for column in spec.columns:
        path = known.get(column.name, "_{tenant}." + camel_case(column.name)).replace("{tenant}", tenant)
        check_path(path)
        xdm_type = standard.get(path, XDM_TYPES[column.type])
        fields.append(XdmField(column.name, path, column.type, xdm_type))
    identity = next((f for f in fields if f.column == spec.identity), None)
    return XdmMapping(spec.name, tenant, xdm_class, tuple(fields), identity)


def to_nested(table: pa.Table, mapping: XdmMapping) -> pa.Table:
    """A flat Arrow table (the spec's columns) as nested XDM records: one struct column per top-level field."""
    tree: dict[str, Any] = {}
    for xdm_field in mapping.fields:
        column = table.column(xdm_field.column).combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        node = tree
        *parents, leaf = xdm_field.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = pc.cast(column, _ARROW_OF_XDM[xdm_field.xdm_type], safe=True)
    names = list(tree)
    return pa.Table.from_arrays([_build(tree[name]) for name in names], names=names)


def _build(node: dict[str, Any] | pa.Array) -> pa.Array:
    """An Arrow array for a subtree: leaves as they are, objects as structs of their children."""
    if isinstance(node, pa.Array):
        return node
    names = list(node)
    return pa.StructArray.from_arrays([_build(node[name]) for name in names], names=names)


def flat_column(path: str) -> str:
    """The one flattening rule: an XDM path's column in a flattened table (``_acme.userid`` -> ``_acme_userid``)."""
    return check_path(path).replace(".", "_").lower()


def path_sql(path: str, flatten: bool) -> exp.Expression:
    """An XDM path as an SQL expression: ``_acme.userid`` (AEP) or the column ``"_acme_userid"`` (flattened)."""
    check_path(path)
    if flatten:
        return exp.column(flat_column(path), quoted=True)
    return exp.Dot.build([exp.to_identifier(part) for part in path.split(".")]) if "." in path else exp.column(path)


def flat_view_sql(mapping: XdmMapping, table: str, flatten: bool, dialect: str) -> str:
    """``CREATE OR REPLACE VIEW <dataset> AS SELECT <path> AS <column>, ... FROM <table>`` in ``dialect``.

    The view gives the pipelines the flat dataset back over the XDM dataset's table. A leaf whose XDM
    type reads back as another type than the flat column's (``loyalty.points`` is an XDM number, the
    flat column an int64) is cast back, so the view has exactly the flat schema.
    """
    check_name(table)
    columns = []
    for xdm_field in mapping.fields:
        value = path_sql(xdm_field.path, flatten)
        if _LOGICAL_OF_XDM[xdm_field.xdm_type] != xdm_field.flat_type:
            value = exp.cast(value, _sql_type(xdm_field.flat_type))
        columns.append(exp.alias_(value, xdm_field.column, quoted=True))
    select = exp.select(*columns).from_(exp.Table(this=exp.to_identifier(table, quoted=True)))
    view = exp.to_identifier(check_name(mapping.dataset), quoted=True)
    return f"CREATE OR REPLACE VIEW {view.sql(dialect)} AS {select.sql(dialect)}"


def _sql_type(logical: LogicalType) -> exp.DataType:
    """The SQL type of a logical column type."""
    names = {
        "string": "TEXT",
        "int64": "BIGINT",
        "float64": "DOUBLE",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP",
        "date": "DATE",
    }
    return exp.DataType.build(names[logical])
