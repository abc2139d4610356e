"""Builders for the emulator tests: field groups, schemas, datasets and batches over the REST API."""

from __future__ import annotations

import io
import json
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from tests.emulator_process import TENANT

from .conftest import AEPClient

SR = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
QUERY = "/data/foundation/query"
UPS = "/data/core/ups"
FLOWS = "/data/foundation/flowservice"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
XED = {"Accept": "application/vnd.adobe.xed+json"}


def field_group(client: AEPClient, fields: dict[str, str], title: str = "scores") -> dict[str, Any]:
    """Create a tenant field group with ``fields`` (name -> JSON type) under ``_acme``."""
    properties = {name: {"type": kind, "title": name} for name, kind in fields.items()}
    body = {
        "title": title,
        "type": "object",
        "allOf": [{"$ref": "#/definitions/customFields"}],
        "meta:intendedToExtend": [PROFILE],
        "definitions": {
            "customFields": {
                "type": "object",
                "properties": {f"_{TENANT}": {"type": "object", "properties": properties}},
            }
        },
    }
    return client.ok("POST", SR + "/tenant/fieldgroups", 201, json=body)


def schema(client: AEPClient, refs: list[str], title: str = "scores schema") -> dict[str, Any]:
    """Create a tenant schema over a class and field groups."""
    body = {"title": title, "type": "object", "allOf": [{"$ref": ref} for ref in refs]}
    return client.ok("POST", SR + "/tenant/schemas", 201, json=body)


def dataset(client: AEPClient, name: str, schema_id: str, profile: bool = False) -> str:
    """Create a dataset; its id."""
    body: dict[str, Any] = {
        "name": name,
        "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed+json"},
    }
    if profile:
        body["tags"] = {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]}
    answer = client.ok("POST", CATALOG + "/dataSets", 201, json=body)
    assert isinstance(answer, list) and answer[0].startswith("@/dataSets/")
    return answer[0].split("/")[-1]


def profile_dataset(client: AEPClient, name: str, profile: bool = True) -> tuple[str, str]:
    """A profile schema (``_acme.userid`` primary ECID identity, ``_acme.propensity``) and a dataset; ids."""
    group = field_group(client, {"userid": "string", "propensity": "number"})
    created = schema(client, [PROFILE, group["$id"], "https://ns.adobe.com/xdm/context/profile-person-details"])
    descriptor = {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": created["$id"],
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": f"/_{TENANT}/userid",
        "xdm:namespace": "ECID",
        "xdm:property": "xdm:id",
        "xdm:isPrimary": True,
    }
    client.ok("POST", SR + "/tenant/descriptors", 201, json=descriptor)
    return created["$id"], dataset(client, name, created["$id"], profile)


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Nested records as Parquet (structs for objects)."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def ingest(
    client: AEPClient, dataset_id: str, files: dict[str, bytes], fmt: str = "parquet", replay: list[str] | None = None
) -> dict[str, Any]:
    """Create a batch (replaying ``replay``'s batches), upload ``files``, complete it and poll Catalog until
    it leaves staging."""
    body: dict[str, Any] = {"datasetId": dataset_id, "inputFormat": {"format": fmt, "isMultiLineJson": fmt == "json"}}
    if replay:
        body["replay"] = {"predecessors": replay, "reason": "replace"}
    batch = client.ok("POST", IMPORT + "/batches", 201, json=body)
    assert batch["status"] == "loading"
    for name, data in files.items():
        path = f"{IMPORT}/batches/{batch['id']}/datasets/{dataset_id}/files/{name}"
        client.ok("PUT", path, 201, data=data, headers={"Content-Type": "application/octet-stream"})
    client.ok("POST", f"{IMPORT}/batches/{batch['id']}?action=COMPLETE")
    answer = client.poll(f"{CATALOG}/batches/{batch['id']}", lambda b: b[batch["id"]]["status"] != "staging")
    return answer[batch["id"]]


def json_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Records as a JSON array."""
    return json.dumps(rows).encode()


def table_of(client: AEPClient, dataset_id: str) -> str:
    """A dataset's Query Service table, from its tag."""
    return client.ok("GET", f"{CATALOG}/dataSets/{dataset_id}")[dataset_id]["tags"]["adobe/pqs/table"][0]


def query_service(client: AEPClient, sql: str) -> list[tuple]:
    """Rows of ``sql`` over the Query Service connection the emulator advertises."""
    return rows_over(client.ok("GET", QUERY + "/connection_parameters"), sql)


def rows_over(params: dict[str, Any], sql: str) -> list[tuple]:
    """Rows of ``sql`` over a psycopg2 connection made from AEP's Query Service connection parameters
    (no search path: the emulator's Query Service role has the data schema as its own)."""
    conn = psycopg2.connect(
        host=params["host"],
        port=params["port"],
        dbname=params["dbName"],
        user=params["username"],
        password=params["token"],
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def run_query(client: AEPClient, sql: str) -> dict[str, Any]:
    """Submit SQL to the queries API and poll it to a final state."""
    query = client.ok("POST", QUERY + "/queries", 202, json={"dbName": "dev:all", "sql": sql, "name": "t"})
    assert query["state"] == "SUBMITTED"
    return client.poll(f"{QUERY}/queries/{query['id']}", lambda q: q["state"] in ("SUCCESS", "FAILED"))
