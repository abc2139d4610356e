"""XDM schemas as the emulator knows them, and flattening nested XDM into one column per leaf.

A schema is its class plus its field groups; its *leaves* are the dotted paths of its scalar
fields with an XDM type. Stored data is flat (AEP's ``FLATTEN`` convention): one column per leaf,
named by the path joined with ``_`` and lower-cased (``_acme.userid`` -> ``_acme_userid``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from aep_propensity.platform.core.port import ARROW_TYPES, Column, LogicalType, check_name

EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"

#: Fields each class brings (dotted path -> XDM type).
CLASSES: dict[str, dict[str, str]] = {
    EVENT_CLASS: {"_id": "string", "timestamp": "date-time", "eventType": "string"},
    PROFILE_CLASS: {"_id": "string"},
}

#: The standard field groups the emulator knows, with the leaves of each that it stores (a subset of Adobe's).
STANDARD_FIELD_GROUPS: dict[str, dict[str, str]] = {
    "https://ns.adobe.com/xdm/context/experienceevent-web": {
        "web.webPageDetails.pageViews.value": "number",
        "web.webPageDetails.name": "string",
        "web.webInteraction.linkClicks.value": "number",
        "web.webInteraction.name": "string",
    },
    "https://ns.adobe.com/xdm/context/experienceevent-directmarketing": {
        "directMarketing.sends.value": "number",
        "directMarketing.opens.value": "number",
        "directMarketing.clicks.value": "number",
    },
    "https://ns.adobe.com/xdm/context/profile-person-details": {
        "person.gender": "string",
        "person.birthYear": "integer",
    },
    "https://ns.adobe.com/xdm/context/profile-personal-details": {
        "personalEmail.address": "string",
        "homeAddress.state": "string",
    },
    "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details": {
        "loyalty.tier": "string",
        "loyalty.points": "number",
        "loyalty.joinDate": "date",
    },
}

LOGICAL_TYPES: dict[str, LogicalType] = {
    "string": "string",
    "number": "float64",
    "double": "float64",
    "float": "float64",
    "integer": "int64",
    "long": "int64",
    "int": "int64",
    "short": "int64",
    "byte": "int64",
    "boolean": "bool",
    "date-time": "timestamp",
    "date": "date",
}

#: The hidden column naming the batch each stored row came from.
BATCH_COLUMN = "_emu_batch"

#: AEP's rule for the name of a field below the tenant namespace: letters, digits and underscores, not
#: starting with an underscore (https://experienceleague.adobe.com/en/docs/experience-platform/xdm/ui/fields/overview).
FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")


class XdmError(ValueError):
    """Data or a definition does not fit the XDM schema; the message names the path."""


def column_name(path: str) -> str:
    """The flat column of a leaf path: parts joined with ``_``, lower-cased."""
    return path.replace(".", "_").lower()


def field_type(spec: Mapping[str, Any]) -> str | None:
    """The XDM type of a field definition (``meta:xdmType`` first, then format and type), or None."""
    xdm_type = spec.get("meta:xdmType")
    if xdm_type in LOGICAL_TYPES:
        return str(xdm_type)
    if spec.get("type") == "string" and spec.get("format") in ("date-time", "date"):
        return str(spec["format"])
    kind = spec.get("type")
    return str(kind) if kind in LOGICAL_TYPES else None


def object_or_empty(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it is an object, ``{}`` if it is null; anything else is an :class:`XdmError` naming ``what``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise XdmError(f"{what} must be an object")
    return value


def properties_leaves(properties: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The leaves (path -> XDM type) under a JSON-schema ``properties`` object."""
    leaves: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if not isinstance(spec, Mapping):
            raise XdmError(f"field '{path}' is not an object definition")
        if "properties" in spec:
            nested = object_or_empty(spec["properties"], f"the properties of field '{path}'")
            leaves.update(properties_leaves(nested, path + "."))
            continue
        kind = field_type(spec)
        if kind is None:
            raise XdmError(f"field '{path}' has type {spec.get('type')!r}, which the emulator does not support")
        leaves[path] = kind
    return leaves


def field_group_leaves(body: Mapping[str, Any]) -> dict[str, str]:
    """The leaves a (tenant) field group defines, from its ``definitions`` and ``properties``."""
    leaves: dict[str, str] = {}
    for name, definition in object_or_empty(body.get("definitions"), "definitions").items():
        if isinstance(definition, Mapping):
            what = f"the properties of definition '{name}'"
            leaves.update(properties_leaves(object_or_empty(definition.get("properties"), what)))
    leaves.update(properties_leaves(object_or_empty(body.get("properties"), "properties")))
    return leaves


def check_tenant_fields(leaves: Iterable[str], tenant: str) -> None:
    """Custom field groups keep their fields under ``_{tenant}``, each named by AEP's rule for field
    names (:data:`FIELD_NAME`), as AEP requires."""
    for path in leaves:
        if not path.startswith(f"_{tenant}."):
            raise XdmError(f"field '{path}' must be nested under the tenant namespace '_{tenant}'")
        bad = [name for name in path.split(".")[1:] if not FIELD_NAME.fullmatch(name)]
        if bad:
            raise XdmError(
                f"field '{path}': the name '{bad[0]}' is not a valid XDM field name (letters, digits and "
                "underscores, not starting with an underscore)"
            )


def columns_of(leaves: Mapping[str, str]) -> list[Column]:
    """The flat columns of a schema's leaves (in path order), refusing two paths on one column and a
    column name PostgreSQL cannot take (:func:`~aep_propensity.platform.core.port.check_name`)."""
    seen: dict[str, str] = {}
    columns = []
    for path in sorted(leaves):
        name = column_name(path)
        try:
            check_name(name, f"column of field '{path}'")
        except ValueError as exc:
            raise XdmError(str(exc)) from None
        if name in seen:
            raise XdmError(f"fields '{seen[name]}' and '{path}' both flatten to column '{name}'")
        seen[name] = path
        columns.append(Column(name, LOGICAL_TYPES[leaves[path]]))
    return columns


# -- flattening data --------------------------------------------------------------------------


def flatten_record(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested JSON record as ``{dotted path: value}``; arrays are refused."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_record(value, path + "."))
        elif isinstance(value, list):
            raise XdmError(f"field '{path}' is an array; the emulator stores scalar leaves only")
        else:
            flat[path] = value
    return flat


def parse_json_records(data: bytes) -> list[dict[str, Any]]:
    """Records of a JSON file: an array (multi-line JSON, or aepp's upload) or JSON lines."""
    text = data.decode("utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        records = json.loads(text)
    else:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not all(isinstance(record, dict) for record in records):
        raise XdmError("every JSON record must be an object")
    return records


def json_to_paths(records: list[dict[str, Any]]) -> dict[str, pa.Array]:
    """Columns (dotted path -> Arrow array) of nested JSON records."""
    flat = [flatten_record(record) for record in records]
    paths = sorted({path for record in flat for path in record})
    columns = {}
    for path in paths:
        try:
            columns[path] = pa.array([record.get(path) for record in flat])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise XdmError(f"field '{path}' mixes incompatible values: {exc}") from None
    return columns


def arrow_to_paths(table: pa.Table) -> dict[str, pa.Array]:
    """Columns (dotted path -> Arrow array) of a table with nested structs, flattened all the way."""
    while any(pa.types.is_struct(field.type) for field in table.schema):
        table = table.flatten()
    for field in table.schema:
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type) or pa.types.is_map(field.type):
            raise XdmError(f"field '{field.name}' is a list or map; the emulator stores scalar leaves only")
    return {name: table.column(name).combine_chunks() for name in table.column_names}


def coerce(array: pa.Array, logical: LogicalType, path: str) -> pa.Array:
    """``array`` as the Arrow type of ``logical``; dates and date-times from ISO strings or epoch ms. A cast
    that would change a value (an integer as a boolean, a date-time's time dropped) is refused."""
    target = ARROW_TYPES[logical]
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), target)
    try:
        if logical in ("timestamp", "date") and (pa.types.is_string(array.type) or pa.types.is_integer(array.type)):
            series = array.to_pandas()
            if pa.types.is_integer(array.type):
                moments = pd.to_datetime(series, unit="ms", utc=True)
            else:
                moments = pd.to_datetime(series, utc=True, format="ISO8601")
            moments = moments.dt.tz_localize(None)
            if logical == "date" and (moments.dropna() != moments.dropna().dt.normalize()).any():
                raise ValueError("a date-time with a time of day is not a date")
            values = moments.dt.date if logical == "date" else moments
            return pa.array(values, type=target, from_pandas=True)
        if pa.types.is_timestamp(array.type) and array.type.tz is not None:
            array = array.cast(pa.timestamp(array.type.unit))
        cast = array.cast(target, safe=True)
        if not cast.cast(array.type).equals(array):  # exact or refused: -7 is no boolean, '007' no number
            raise ValueError("not every value casts exactly")
        return cast
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError, TypeError) as exc:
        raise XdmError(
            f"TypeCompatibilityException: field '{path}' of type {array.type} cannot be stored as {logical}: {exc}"
        ) from None


def conform(
    columns: dict[str, pa.Array], leaves: Mapping[str, str], spec_columns: list[Column], batch_id: str
) -> pa.Table:
    """A flat Arrow table with ``spec_columns`` (schema leaves plus the batch column) from path columns."""
    by_column = {column_name(path): path for path in leaves}
    unknown = sorted(path for path in columns if path not in leaves)
    if unknown:
        raise XdmError(f"field '{unknown[0]}' is not defined in the dataset's schema")
    rows = len(next(iter(columns.values()))) if columns else 0
    arrays = []
    for column in spec_columns:
        if column.name == BATCH_COLUMN:
            arrays.append(pa.array([batch_id] * rows, pa.string()))
            continue
        path = by_column.get(column.name)
        if path is None or path not in columns:
            arrays.append(pa.nulls(rows, ARROW_TYPES[column.type]))
        else:
            arrays.append(coerce(columns[path], column.type, path))
    schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in spec_columns])
    return pa.Table.from_arrays(arrays, schema=schema)
