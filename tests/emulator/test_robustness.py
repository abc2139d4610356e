"""The emulator over HTTP when things go wrong: restarts, concurrent batch actions, cancelled queries,
deleted flows, bad JSON Patches and Query Service names that would collide with its own tables."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import psycopg2
import pytest
import requests

from tests.conftest import PG_DSN
from tests.emulator_process import RunningEmulator

from .conftest import AEPClient
from .helpers import (
    CATALOG,
    FLOWS,
    IMPORT,
    PROFILE,
    QUERY,
    SR,
    UPS,
    XED,
    field_group,
    ingest,
    json_bytes,
    profile_dataset,
    run_query,
    schema,
    table_of,
)

pytestmark = pytest.mark.postgres

OCTET = {"Content-Type": "application/octet-stream"}
DLZ_CONNECTION_SPEC = "10440537-2a7b-4583-ac39-ed38d4b848e8"
DLZ_FLOW_SPEC = "cd2fc47e-e838-4f38-a581-8fff2f99b63a"
ADHOC = "/data/core/activation/disflowprovider/adhocrun"
DATASET_ADHOC = {"Accept": "application/vnd.adobe.adhoc.dataset.activation+json; version=1"}


def sql(statement: str, params: list[Any] | None = None) -> list[tuple]:
    """Run SQL straight on PostgreSQL (to set up what a crash would leave behind, or to look)."""
    conn = psycopg2.connect(PG_DSN)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def loading_batch(client: AEPClient, dataset_id: str, rows: list[dict[str, Any]]) -> str:
    """A batch with one uploaded JSON file, still loading; its id."""
    batch = client.ok(
        "POST", IMPORT + "/batches", 201, json={"datasetId": dataset_id, "inputFormat": {"format": "json"}}
    )
    path = f"{IMPORT}/batches/{batch['id']}/datasets/{dataset_id}/files/rows.json"
    client.ok("PUT", path, 201, data=json_bytes(rows), headers=OCTET)
    return str(batch["id"])


def batch_status(client: AEPClient, batch_id: str) -> str:
    """A batch's Catalog status."""
    return str(client.ok("GET", f"{CATALOG}/batches/{batch_id}")[batch_id]["status"])


def wait_promoted(client: AEPClient, batch_id: str) -> str:
    """Poll a batch until it leaves staging; its status."""
    answer = client.poll(f"{CATALOG}/batches/{batch_id}", lambda b: b[batch_id]["status"] != "staging", timeout=30)
    return str(answer[batch_id]["status"])


def assert_problem(response: requests.Response, status: int, code: str) -> None:
    """``response`` is AEP's problem document with ``status`` and error ``code``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["type"].endswith(code) and body["detail"] and "report" in body


def test_resumed_promotion_does_not_duplicate(client: AEPClient, emulator: RunningEmulator) -> None:
    """A staging batch whose rows an interrupted promotion had already committed is promoted again
    after a restart without duplicating them."""
    _, dataset_id = profile_dataset(client, "Resumed", profile=False)
    table = table_of(client, dataset_id)
    emulator.set_faults({"batch_delay_seconds": 30})
    batch_id = loading_batch(client, dataset_id, [{"_acme": {"userid": "r1", "propensity": 0.5}}])
    client.ok("POST", f"{IMPORT}/batches/{batch_id}?action=COMPLETE")
    assert batch_status(client, batch_id) == "staging"
    sql(
        f'INSERT INTO "{emulator.schema}"."{table}" (_acme_userid, _emu_batch) VALUES (%s, %s)', ["r1", batch_id]
    )  # what a promotion that died after committing its rows leaves behind
    started = time.monotonic()
    emulator.restart()  # the sleeping promotion stops at once; the batch is still staging
    assert time.monotonic() - started < 10
    assert wait_promoted(client, batch_id) == "success"
    counted = sql(f'SELECT count(*) FROM "{emulator.schema}"."{table}" WHERE _emu_batch = %s', [batch_id])
    assert counted == [(1,)]


def test_concurrent_completes_promote_once(client: AEPClient, emulator: RunningEmulator) -> None:
    """Eight simultaneous COMPLETEs all answer 200 and start one promotion: the rows land once."""
    _, dataset_id = profile_dataset(client, "Concurrent", profile=False)
    rows = [{"_acme": {"userid": f"c{i}"}} for i in range(3)]
    batch_id = loading_batch(client, dataset_id, rows)
    emulator.set_faults({"batch_delay_seconds": 0.5})  # promotions started twice would overlap
    try:
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def complete() -> None:
            other = AEPClient(emulator.url)
            barrier.wait()
            statuses.append(other.call("POST", f"{IMPORT}/batches/{batch_id}?action=COMPLETE").status_code)

        threads = [threading.Thread(target=complete) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 8
        assert wait_promoted(client, batch_id) == "success"
    finally:
        emulator.set_faults({})
    table = table_of(client, dataset_id)
    assert sql(f'SELECT count(*) FROM "{emulator.schema}"."{table}" WHERE _emu_batch = %s', [batch_id]) == [(3,)]
    client.ok("POST", f"{IMPORT}/batches/{batch_id}?action=COMPLETE")  # a retry after success is harmless
    assert_problem(client.call("POST", f"{IMPORT}/batches/{batch_id}?action=FAIL"), 400, "INGEST-1400-400")
    assert batch_status(client, batch_id) == "success"


def test_actions_on_a_staging_batch(client: AEPClient, emulator: RunningEmulator) -> None:
    """On a batch in staging FAIL and ABORT answer 400 and change nothing; COMPLETE is a safe retry.
    On a loading batch FAIL and ABORT apply."""
    _, dataset_id = profile_dataset(client, "Staging Actions", profile=False)
    emulator.set_faults({"batch_delay_seconds": 2})
    try:
        staging = loading_batch(client, dataset_id, [{"_acme": {"userid": "s1"}}])
        client.ok("POST", f"{IMPORT}/batches/{staging}?action=COMPLETE")
        for action in ("FAIL", "ABORT", "REVERT"):
            assert_problem(client.call("POST", f"{IMPORT}/batches/{staging}?action={action}"), 400, "INGEST-1400-400")
        client.ok("POST", f"{IMPORT}/batches/{staging}?action=COMPLETE")
        assert batch_status(client, staging) == "staging"
        assert wait_promoted(client, staging) == "success"
    finally:
        emulator.set_faults({})
    failing = loading_batch(client, dataset_id, [{"_acme": {"userid": "f1"}}])
    client.ok("POST", f"{IMPORT}/batches/{failing}?action=FAIL")
    assert batch_status(client, failing) == "failed"
    assert client.call("POST", f"{IMPORT}/batches/{failing}?action=COMPLETE").status_code == 400
    aborting = loading_batch(client, dataset_id, [{"_acme": {"userid": "a1"}}])
    client.ok("POST", f"{IMPORT}/batches/{aborting}?action=ABORT")
    assert batch_status(client, aborting) == "aborted"


def test_restart_fails_unfinished_jobs(client: AEPClient, emulator: RunningEmulator) -> None:
    """Segment jobs, export jobs and flow runs a previous run left unfinished are FAILED after a restart,
    with an error saying why, so that pollers stop."""
    state = f'"{emulator.schema}_state".emu_objects'
    job_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    records = [
        ("segmentjobs", job_id, {"id": job_id, "status": "PROCESSING", "segments": [], "metrics": {}}),
        ("exportjobs", "424242", {"id": 424242, "status": "NEW", "destination": {}, "metrics": {}}),
        (
            "runs",
            run_id,
            {
                "id": run_id,
                "flowId": "f",
                "metrics": {"durationSummary": {}, "statusSummary": {"status": "processing"}},
            },
        ),
    ]
    for kind, ident, body in records:  # what a crash in the middle of these jobs leaves behind
        sql(
            f"INSERT INTO {state} (kind, id, body, created) VALUES (%s, %s, %s, %s)", [kind, ident, json.dumps(body), 0]
        )
    emulator.restart()
    job = client.ok("GET", f"{UPS}/segment/jobs/{job_id}")
    assert job["status"] == "FAILED" and "restarted" in job["errors"][0]["msg"]
    export = client.ok("GET", f"{UPS}/export/jobs/424242")
    assert export["status"] == "FAILED" and "restarted" in export["errors"][0]["msg"]
    summary = client.ok("GET", f"{FLOWS}/runs/{run_id}")["items"][0]["metrics"]["statusSummary"]
    assert summary["status"] == "failed" and "restarted" in summary["errors"][0]["message"]


def test_cancel_really_cancels(client: AEPClient) -> None:
    """Cancelling a running query stops its statement in PostgreSQL, not only its record."""
    marker = f"cancel-{uuid.uuid4().hex}"
    query = client.ok(
        "POST", QUERY + "/queries", 202, json={"dbName": "dev:all", "sql": f"SELECT pg_sleep(60), '{marker}'"}
    )
    running_sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE %s"
    )
    deadline = time.monotonic() + 10
    while sql(running_sql, [f"%{marker}%"]) != [(1,)]:
        assert time.monotonic() < deadline, "the query never started"
        time.sleep(0.05)
    answer = client.call("PATCH", f"{QUERY}/queries/{query['id']}", json={"op": "cancel"})
    assert answer.status_code == 202
    deadline = time.monotonic() + 5
    while sql(running_sql, [f"%{marker}%"]) != [(0,)]:
        assert time.monotonic() < deadline, "the cancelled statement is still running"
        time.sleep(0.05)
    assert client.ok("GET", f"{QUERY}/queries/{query['id']}")["state"] == "KILLED"


def test_query_names_cannot_reach_the_emulators_tables(client: AEPClient) -> None:
    """CTAS and DROP of an emu_* name act on the data schema only; the local platform's names are refused."""
    assert run_query(client, "SELECT count(*) FROM emu_tokens")["state"] == "FAILED"
    assert run_query(client, "CREATE TABLE emu_objects AS SELECT 1 AS x")["state"] == "SUCCESS"
    assert client.ok("GET", SR + "/stats")["tenantId"]  # the emulator's own state is untouched
    assert run_query(client, "DROP TABLE emu_objects")["state"] == "SUCCESS"
    assert client.ok("GET", CATALOG + "/dataSets", params={"limit": 1}) is not None
    for statement in ("CREATE TABLE ledger_batches AS SELECT 1 AS x", "DROP TABLE ledger_datasets"):
        response = client.call("POST", QUERY + "/queries", json={"dbName": "dev:all", "sql": statement})
        assert_problem(response, 400, "QS-1400-400")


def test_delete_flow_service_objects(client: AEPClient) -> None:
    """DELETE of a flow, base, source or target connection answers 204, then 404 in AEP's shape;
    a deleted flow no longer runs."""
    spec = {"id": DLZ_CONNECTION_SPEC, "version": "1.0"}
    base = client.ok("POST", FLOWS + "/connections", 201, json={"name": "dlz", "connectionSpec": spec})["id"]
    target = {"name": "t", "baseConnectionId": base, "connectionSpec": spec, "params": {"path": "deleted"}}
    target_id = client.ok("POST", FLOWS + "/targetConnections", 201, json=target)["id"]
    source = {"name": "s", "connectionSpec": {"id": "23598e46-f560-407b-88d5-ea6207e49db0", "version": "1.0"}}
    source_id = client.ok("POST", FLOWS + "/sourceConnections", 201, json=source)["id"]
    flow = {
        "name": "to delete",
        "flowSpec": {"id": DLZ_FLOW_SPEC, "version": "1.0"},
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
    }
    flow_id = client.ok("POST", FLOWS + "/flows", 201, json=flow)["id"]
    _, dataset_id = profile_dataset(client, "Flow Deleted", profile=False)
    for collection, ident in (
        ("flows", flow_id),
        ("sourceConnections", source_id),
        ("targetConnections", target_id),
        ("connections", base),
    ):
        deleted = client.call("DELETE", f"{FLOWS}/{collection}/{ident}")
        assert deleted.status_code == 204 and not deleted.content
        assert_problem(client.call("DELETE", f"{FLOWS}/{collection}/{ident}"), 404, "FLOW-1404-404")
        assert_problem(client.call("GET", f"{FLOWS}/{collection}/{ident}"), 404, "FLOW-1404-404")
    run = {"activationInfo": {"destinations": [{"flowId": flow_id, "datasets": [{"id": dataset_id}]}]}}
    assert_problem(client.call("POST", ADHOC, json=run, headers=DATASET_ADHOC), 404, "FLOW-1404-404")
    assert client.ok("GET", f"{FLOWS}/runs", params={"property": f"flowId=={flow_id}"})["items"] == []
    assert client.call("DELETE", f"{FLOWS}/nothing/{flow_id}").status_code == 404


@pytest.mark.parametrize(
    "patch",
    [
        {"op": "add", "path": "/tags/x", "value": 1},  # not an array
        [{"op": "add", "path": "/no/such/parent", "value": 1}],  # RFC 6902: the parent must exist
        [{"op": "replace", "path": "/nothing", "value": 1}],
        [{"op": "test", "path": "/name", "value": "another name"}],
        [{"op": "frobnicate", "path": "/name"}],
        [{"op": "add", "path": "name", "value": 1}],
        [{"op": "move", "path": "/x"}],
        "not a patch",
    ],
)
def test_bad_json_patch_is_a_400(client: AEPClient, patch: Any) -> None:
    """A patch that is invalid or cannot apply is a 400 problem document, and changes nothing."""
    _, dataset_id = profile_dataset(client, f"Patched {uuid.uuid4().hex[:6]}", profile=False)
    before = client.ok("GET", f"{CATALOG}/dataSets/{dataset_id}")[dataset_id]
    assert_problem(client.call("PATCH", f"{CATALOG}/dataSets/{dataset_id}", json=patch), 400, "CAT-1400-400")
    assert client.ok("GET", f"{CATALOG}/dataSets/{dataset_id}")[dataset_id] == before


def test_json_patch_is_rfc_6902(client: AEPClient) -> None:
    """test, copy and move apply as RFC 6902 says, on datasets, schemas and segment definitions alike."""
    _, dataset_id = profile_dataset(client, "Rfc Patch", profile=False)
    patch = [
        {"op": "test", "path": "/name", "value": "Rfc Patch"},
        {"op": "add", "path": "/tags/unifiedProfile", "value": ["enabled:true"]},
        {"op": "copy", "from": "/tags/unifiedProfile", "path": "/tags/unifiedIdentity"},
        {"op": "add", "path": "/description", "value": "moved"},
        {"op": "move", "from": "/description", "path": "/tags/note"},
    ]
    client.ok("PATCH", f"{CATALOG}/dataSets/{dataset_id}", json=patch)
    tags = client.ok("GET", f"{CATALOG}/dataSets/{dataset_id}")[dataset_id]["tags"]
    assert tags["unifiedIdentity"] == ["enabled:true"] and tags["note"] == "moved"
    group = field_group(client, {"userid": "string"}, title="rfc")
    created = schema(client, [PROFILE, group["$id"]], title="rfc")
    schema_path = f"{SR}/tenant/schemas/{created['meta:altId']}"
    assert_problem(client.call("PATCH", schema_path, json=[{"op": "remove", "path": "/nope"}]), 400, "XDM-1000-400")
    client.ok("PATCH", schema_path, json=[{"op": "add", "path": "/description", "value": "d"}])
    assert client.ok("GET", schema_path, headers=XED)["description"] == "d"
    definition = {
        "name": "rfc",
        "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": "pql/text", "value": '_acme.userid = "a"'},
    }
    segment = client.ok("POST", UPS + "/segment/definitions", json=definition)
    bad = [{"op": "test", "path": "/name", "value": "other"}]
    assert_problem(client.call("PATCH", f"{UPS}/segment/definitions/{segment['id']}", json=bad), 400, "UPS-1400-400")


def test_batch_of_a_failed_ingest_is_untouched_by_revert(client: AEPClient) -> None:
    """REVERT is refused for a batch that never succeeded (and the compare-and-set keeps it as it is)."""
    _, dataset_id = profile_dataset(client, "Revert Refused", profile=False)
    failed = ingest(client, dataset_id, {"x.json": json_bytes([{"_acme": {"nope": 1}}])}, fmt="json")
    assert failed["status"] == "failed"
    assert_problem(client.call("POST", f"{IMPORT}/batches/{failed['id']}?action=REVERT"), 400, "INGEST-1400-400")
    assert batch_status(client, failed["id"]) == "failed"
