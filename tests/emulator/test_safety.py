"""The emulator is safe to run (issue 13): Query Service SQL runs as a PostgreSQL role of the datasets'
schema only, on both the queries API and the PostgreSQL wire; field names that cannot become
columns are refused when their field group is created; the emulator's own endpoints need a token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
import requests

from aep_propensity.platform import identifier
from tests.conftest import PG_DSN
from tests.emulator_process import RunningEmulator, drop_schema, free_port

from .conftest import AEPClient
from .helpers import CATALOG, PROFILE, QUERY, SR, field_group, ingest, json_bytes, profile_dataset, run_query, table_of

INSUFFICIENT_PRIVILEGE = "42501"


def admin_sql(sql: str, dsn: str = PG_DSN) -> None:
    """Run ``sql`` as the test cluster's superuser, committed."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def aep_connection(params: dict[str, Any]) -> psycopg2.extensions.connection:
    """A connection made from exactly what AEP's connection parameters carry (no search path)."""
    return psycopg2.connect(
        host=params["host"],
        port=params["port"],
        dbname=params["dbName"],
        user=params["username"],
        password=params["token"],
    )


def wire_error(params: dict[str, Any], sql: str) -> str | None:
    """The SQLSTATE ``sql`` fails with over the wire, or None when it runs."""
    conn = aep_connection(params)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        return None
    except psycopg2.Error as exc:
        return exc.pgcode
    finally:
        conn.close()


@pytest.fixture(scope="module")
def table(client: AEPClient) -> str:
    """An ingested dataset's table (so that the local platform's ledger tables exist too)."""
    _, dataset_id = profile_dataset(client, "Guarded", profile=False)
    ingest(client, dataset_id, {"x.json": json_bytes([{"_acme": {"userid": "a", "propensity": 1.0}}])}, fmt="json")
    return table_of(client, dataset_id)


@pytest.fixture
def other_schema(emulator: RunningEmulator) -> Iterator[str]:
    """Another schema of the cluster with a table in it."""
    name = f"{emulator.schema}_other"
    admin_sql(f"CREATE SCHEMA {name}; CREATE TABLE {name}.secret AS SELECT 1 AS x")
    try:
        yield name
    finally:
        drop_schema(name)


def forbidden_sql(emulator: RunningEmulator, other: str) -> list[str]:
    """SQL the Query Service must refuse: the emulator's state, server files, other schemas, the ledger."""
    state = f"{emulator.schema}_state"
    return [
        f"SELECT count(*) FROM {state}.emu_tokens",
        f"DELETE FROM {state}.emu_objects",
        "SELECT pg_read_file('PG_VERSION')",
        f"SELECT x FROM {other}.secret",
        f"CREATE TABLE {other}.planted AS SELECT 1 AS x",
        "DO $$ BEGIN EXECUTE 'DELETE FROM ledger_batches'; END $$",
        "DO $$ BEGIN EXECUTE 'DROP TABLE ledger_datasets'; END $$",
    ]


def test_queries_api_runs_as_a_restricted_role(
    client: AEPClient, emulator: RunningEmulator, table: str, other_schema: str
) -> None:
    """The queries API refuses the state schema, server files, other schemas and ledger writes in a DO block,
    and still reads and writes the datasets."""
    for sql in forbidden_sql(emulator, other_schema):
        query = run_query(client, sql)
        assert query["state"] == "FAILED" and query["errors"][0]["code"] == INSUFFICIENT_PRIVILEGE, (sql, query)
    assert run_query(client, f"INSERT INTO {table} (_acme_userid) VALUES ('b')")["state"] == "SUCCESS"
    assert run_query(client, "CREATE TABLE guarded_copy AS SELECT 1 AS x")["state"] == "SUCCESS"
    assert run_query(client, "DROP TABLE guarded_copy")["state"] == "SUCCESS"


def test_wire_connects_as_the_restricted_role(
    client: AEPClient, emulator: RunningEmulator, table: str, other_schema: str
) -> None:
    """AEP's connection parameters (no searchPath) name the restricted role, whose search path is the
    datasets' schema: a plain client sees the dataset tables and nothing it must not."""
    params = client.ok("GET", QUERY + "/connection_parameters")
    assert "searchPath" not in params and params["username"] == f"{emulator.schema}_query"
    assert params["token"] == client.token
    conn = aep_connection(params)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone()[0] >= 1
    finally:
        conn.close()
    for sql in forbidden_sql(emulator, other_schema):
        assert wire_error(params, sql) == INSUFFICIENT_PRIVILEGE, sql


def test_field_names_that_cannot_be_columns_are_refused_early(client: AEPClient) -> None:
    """AEP's field names are letters, digits and underscores, not starting with an underscore below the tenant
    namespace: others are a 400 when the field group is created, never a 500 at dataset creation."""
    for name in ("user-id", "first name", "_hidden", "naïve", "x" * 70):
        body = {
            "title": f"bad {name}",
            "definitions": {"c": {"properties": {"_acme": {"properties": {name: {"type": "string"}}}}}},
        }
        answer = client.call("POST", SR + "/tenant/fieldgroups", json=body)
        assert answer.status_code == 400, (name, answer.status_code, answer.text)
        assert answer.json()["title"] or answer.json()["detail"]


def test_failed_dataset_creation_leaves_no_dataset(client: AEPClient) -> None:
    """A dataset whose table cannot be made (a view holds its name) is refused and not kept."""
    group = field_group(client, {"userid": "string"}, title="blocked")
    created = client.ok(
        "POST",
        SR + "/tenant/schemas",
        201,
        json={"title": "blocked", "allOf": [{"$ref": PROFILE}, {"$ref": group["$id"]}]},
    )
    assert run_query(client, "CREATE VIEW blocked_name AS SELECT 1 AS x")["state"] == "SUCCESS"
    body = {
        "name": "blocked_name",
        "schemaRef": {"id": created["$id"], "contentType": "application/vnd.adobe.xed+json"},
    }
    answer = client.call("POST", CATALOG + "/dataSets", json=body)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert client.ok("GET", CATALOG + "/dataSets?name=blocked_name") == {}


def test_emulator_endpoints_need_a_token(client: AEPClient, emulator: RunningEmulator) -> None:
    """``/emulator/faults`` and ``/emulator/openapi.json`` answer only a bearer token the emulator issued."""
    for method, path in (("GET", "/emulator/faults"), ("POST", "/emulator/faults"), ("GET", "/emulator/openapi.json")):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            answer = requests.request(method, emulator.url + path, json={}, headers=headers, timeout=10)
            assert answer.status_code in (401, 403), (method, path, answer.status_code)
    bearer = {"Authorization": f"Bearer {client.token}"}
    assert requests.get(emulator.url + "/emulator/faults", headers=bearer, timeout=10).json()["faults"] == {}
    assert (
        "/data/foundation/query/queries"
        in requests.get(emulator.url + "/emulator/openapi.json", headers=bearer, timeout=10).json()["paths"]
    )
    emulator.set_faults({})  # the test helper sends a token
    assert emulator.injected_faults() == 0


@pytest.fixture
def limited_dsn() -> Iterator[str]:
    """A PostgreSQL user that may create schemas but not roles; dropped afterwards."""
    user = f"test_nocreaterole_{uuid.uuid4().hex[:8]}"
    dbname = psycopg2.extensions.parse_dsn(PG_DSN).get("dbname", "postgres")
    admin_sql(
        f"CREATE ROLE {user} LOGIN NOCREATEROLE NOSUPERUSER; GRANT CREATE ON DATABASE {identifier(dbname)} TO {user}"
    )
    try:
        yield psycopg2.extensions.make_dsn(PG_DSN, user=user)
    finally:
        admin_sql(f"DROP OWNED BY {user}; DROP ROLE {user}")


def test_without_createrole_user_sql_is_refused(limited_dsn: str, tmp_path: Path) -> None:
    """A DSN user that cannot create roles: the emulator says so at start and runs no user SQL."""
    schema = f"test_emu_{uuid.uuid4().hex[:10]}"
    emulator = RunningEmulator(free_port(), schema, tmp_path / "data", tmp_path / "log.txt", dsn=limited_dsn)
    emulator.start()
    try:
        client = AEPClient(emulator.url)
        assert "cannot create roles" in emulator.log.read_text()
        body = {"dbName": "prod:all", "sql": "SELECT 1", "name": "refused"}
        assert client.call("POST", QUERY + "/queries", json=body).status_code == 503
        assert client.call("GET", QUERY + "/connection_parameters").status_code == 503
    finally:
        emulator.stop()
        for name in (schema, f"{schema}_state"):
            drop_schema(name)
