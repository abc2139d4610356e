"""The union profile: Real-Time Customer Profile's merged view, as SQL over the emulator's datasets.

Every profile-enabled dataset (tag ``unifiedProfile: ["enabled:true"]``) of a schema of the XDM
Individual Profile class with a primary identity contributes its rows; rows are merged by that
identity, and per identity and attribute the value of the latest successful batch that has one
wins, as AEP's timestamp-ordered merge policy gives priority to the most recently updated profile
fragment. Segments are PQL over it (compiled by :func:`aep_propensity.platform.core.pql.compile_pql`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aep_propensity.platform.core.port import Column
from aep_propensity.platform.core.pql import Field, compile_pql
from aep_propensity.platform.core.sql import identifier

from .catalog import dataset_columns, table_of
from .registry import find, primary_identity
from .service import Emulator
from .xdm_schema import BATCH_COLUMN, PROFILE_CLASS, column_name

#: The identity column of the union profile's SQL.
IDENTITY = "_emu_identity"
_PQL_TYPES = {"float64": "number", "int64": "number", "string": "string", "bool": "boolean", "date": "date"}


@dataclass(frozen=True)
class UnionProfile:
    """The union profile as SQL (one row per identity, its identity in :data:`IDENTITY`), with its
    attributes by XDM path and the identity's XDM path."""

    sql: str
    paths: dict[str, Column]
    identity_path: str


def _profile_enabled(dataset: dict[str, Any]) -> bool:
    """Whether a dataset carries the ``unifiedProfile`` enabled tag."""
    values = (dataset.get("tags") or {}).get("unifiedProfile") or []
    return any(value.replace(" ", "") == "enabled:true" for value in values)


def union_profile(emu: Emulator) -> UnionProfile:
    """The union of the profile-enabled profile-class datasets, latest batch winning per attribute;
    a ValueError when there is none."""
    sources: list[tuple[str, str, list[Column]]] = []
    paths: dict[str, Column] = {}
    identity_path = ""
    for dataset in emu.store.all("datasets"):
        schema_id = (dataset.get("schemaRef") or {}).get("id")
        if not schema_id or not _profile_enabled(dataset):
            continue
        schema = find(emu, "schemas", schema_id)
        identity = primary_identity(emu, schema_id)
        if schema.get("meta:class") != PROFILE_CLASS or identity is None:
            continue
        leaves, columns = dataset_columns(emu, dataset)
        identity_path = identity_path or identity[0]
        typed = {column.name: column for column in columns}
        for path in leaves:
            paths.setdefault(path, typed[column_name(path)])
        sources.append((table_of(dataset), column_name(identity[0]), [typed[column_name(p)] for p in leaves]))
    if not sources:
        raise ValueError("no profile-enabled dataset of the profile class with a primary identity")
    return UnionProfile(_union_sql(emu, sources, list(paths.values())), paths, identity_path)


def _union_sql(emu: Emulator, sources: list[tuple[str, str, list[Column]]], columns: list[Column]) -> str:
    """SQL merging the sources by identity; each attribute from the latest batch that sets it."""
    batches = (
        f"(SELECT id, (body->>'completed')::bigint AS seq FROM {emu.store.table('emu_objects')} "
        "WHERE kind = 'batches' AND body->>'status' = 'success') AS b"
    )
    parts = []
    for table, identity_column, own in sources:
        names = {column.name for column in own}
        selected = [
            f"t.{identifier(c.name)}"
            if c.name in names
            else f"CAST(NULL AS {emu.engine.sql_type(c)}) AS {identifier(c.name)}"
            for c in columns
        ]
        parts.append(
            f"SELECT t.{identifier(identity_column)} AS {IDENTITY}, {', '.join(selected)}, b.seq AS _emu_seq "
            f"FROM {identifier(table)} AS t JOIN {batches} ON b.id = t.{identifier(BATCH_COLUMN)} "
            f"WHERE t.{identifier(identity_column)} IS NOT NULL"
        )
    merged = [
        f"(array_agg({identifier(c.name)} ORDER BY _emu_seq DESC) "
        f"FILTER (WHERE {identifier(c.name)} IS NOT NULL))[1] AS {identifier(c.name)}"
        for c in columns
    ]
    return f"SELECT {IDENTITY}, {', '.join(merged)} FROM ({' UNION ALL '.join(parts)}) AS u GROUP BY {IDENTITY}"


def compile_segment(profile: UnionProfile, rule: str) -> tuple[str, tuple]:
    """A segment's PQL as a PostgreSQL predicate (``%s`` placeholders) over the union profile."""
    fields = {path: Field(c.name, _PQL_TYPES[c.type]) for path, c in profile.paths.items() if c.type in _PQL_TYPES}
    compiled = compile_pql(rule, fields)
    return compiled.predicate.replace("?", "%s"), compiled.params
