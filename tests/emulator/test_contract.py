"""Contract tests of the emulator against AEP's REST contract: statuses, shapes and error codes per endpoint."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from tests.emulator_process import CLIENT_ID, ORG_ID, TENANT, RunningEmulator

from .conftest import AEPClient, fetch_token
from .helpers import (
    CATALOG,
    FLOWS,
    IMPORT,
    PROFILE,
    QUERY,
    SR,
    UPS,
    XED,
    dataset,
    field_group,
    ingest,
    json_bytes,
    parquet_bytes,
    profile_dataset,
    query_service,
    run_query,
    schema,
    table_of,
)

pytestmark = pytest.mark.postgres

DLZ_CONNECTION_SPEC = "10440537-2a7b-4583-ac39-ed38d4b848e8"
DLZ_FLOW_SPEC = "cd2fc47e-e838-4f38-a581-8fff2f99b63a"
OCTET = {"Content-Type": "application/octet-stream"}


def run_finished(runs: dict) -> bool:
    """Whether the newest run of a ``GET /runs`` answer has finished."""
    return bool(runs["items"]) and runs["items"][0]["metrics"]["statusSummary"]["status"] != "processing"


def test_ims_token(emulator: RunningEmulator) -> None:
    """The client-credentials grant answers a bearer token in seconds; wrong credentials IMS's error."""
    answer = fetch_token(emulator.url)
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "bearer" and answer.json()["expires_in"] == 86399
    wrong_secret = fetch_token(emulator.url, secret="nope")
    wrong_client = fetch_token(emulator.url, client_id="nobody")
    assert wrong_secret.status_code == wrong_client.status_code == 401
    assert wrong_secret.json() == wrong_client.json()  # a wrong id and a wrong secret look the same
    assert wrong_secret.json()["error"] == "invalid_client"
    for odd in ("sécret-ü", "秘密", b"\xff\xfe"):  # non-ASCII or invalid UTF-8 is a mismatch (401), not a 500
        assert fetch_token(emulator.url, secret=odd).status_code == 401
        assert fetch_token(emulator.url, client_id=odd).status_code == 401


@pytest.mark.parametrize(
    ("override", "status", "code"),
    [
        ({"Authorization": ""}, 403, "403010"),
        ({"Authorization": "Bearer not-a-token"}, 401, "401013"),
        ({"x-api-key": ""}, 403, "403000"),
        ({"x-api-key": "someone-else"}, 403, "403003"),
        ({"x-gw-ims-org-id": ""}, 400, "400003"),
        ({"x-gw-ims-org-id": "OTHER@AdobeOrg"}, 403, "403025"),
    ],
)
def test_gateway_header_errors(client: AEPClient, override: dict[str, str], status: int, code: str) -> None:
    """Missing or wrong headers answer the gateway's codes and messages, never internals."""
    headers = {key: value for key, value in {**client.headers, **override}.items() if value}
    response = requests.get(client.url + SR + "/stats", headers=headers, timeout=10)
    assert response.status_code == status
    assert response.json()["error_code"] == code and response.json()["message"]
    assert client.token not in response.text


def test_content_type_and_sandbox(client: AEPClient) -> None:
    """A body without a JSON content type, or an upper-case sandbox, is a 400."""
    response = client.call("POST", SR + "/tenant/schemas", data="{}", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400 and response.json()["title"] == "BadRequestError"
    response = client.call("GET", SR + "/stats", headers={"x-sandbox-name": "Prod"})
    assert response.status_code == 400


def test_schema_registry(client: AEPClient) -> None:
    """Tenant id, field groups, schemas (lookup by $id and altId), union tag, descriptors and errors."""
    stats = client.ok("GET", SR + "/stats/")
    titled = client.ok("GET", SR + "/tenant/schemas", params={"property": "title==nothing"})
    assert titled["results"] == []
    assert stats["tenantId"] == TENANT and stats["imsOrg"] == ORG_ID
    group = field_group(client, {"userid": "string", "propensity": "number"}, title="registry test")
    assert group["$id"].startswith(f"https://ns.adobe.com/{TENANT}/mixins/")
    assert group["meta:altId"].startswith(f"_{TENANT}.mixins.") and group["meta:resourceType"] == "mixins"
    bad = {"title": "x", "definitions": {"d": {"properties": {"loose": {"type": "string"}}}}}
    response = client.call("POST", SR + "/tenant/fieldgroups", json=bad)
    assert response.status_code == 400 and "_acme" in response.json()["detail"]
    created = schema(client, [PROFILE, group["$id"]])
    assert created["meta:class"] == PROFILE and created["$id"].startswith(f"https://ns.adobe.com/{TENANT}/schemas/")
    for ident in (created["meta:altId"], urllib.parse.quote(created["$id"], safe="")):
        assert client.ok("GET", f"{SR}/tenant/schemas/{ident}", headers=XED)["$id"] == created["$id"]
    assert client.call("GET", f"{SR}/tenant/schemas/{created['meta:altId']}").status_code == 406
    missing = client.call("GET", f"{SR}/tenant/schemas/_acme.schemas.nothere", headers=XED)
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("XDM-1010-404") and missing.json()["status"] == 404
    unknown_ref = client.call(
        "POST", SR + "/tenant/schemas", json={"title": "u", "allOf": [{"$ref": PROFILE}, {"$ref": "https://x"}]}
    )
    assert unknown_ref.status_code == 400
    patch = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    patched = client.ok("PATCH", f"{SR}/tenant/schemas/{urllib.parse.quote(created['$id'], safe='')}", json=patch)
    assert patched["meta:immutableTags"] == ["union"]
    descriptor = {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": created["$id"],
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": "/_acme/userid",
        "xdm:namespace": "ECID",
        "xdm:property": "xdm:id",
        "xdm:isPrimary": True,
    }
    assert client.ok("POST", SR + "/tenant/descriptors", 201, json=descriptor)["@id"]
    wrong = client.call("POST", SR + "/tenant/descriptors", json={**descriptor, "xdm:sourceProperty": "/_acme/nope"})
    assert wrong.status_code == 400


def test_identity_namespaces(client: AEPClient) -> None:
    """The standard namespaces include ECID."""
    codes = {ns["code"] for ns in client.ok("GET", "/data/core/idnamespace/identities")}
    assert {"ECID", "Email"} <= codes


def test_datasets_and_batches(client: AEPClient) -> None:
    """Datasets answer id-keyed maps with their table tag; Parquet and JSON batches land flattened."""
    _, dataset_id = profile_dataset(client, "Batch Test", profile=False)
    body = client.ok("GET", f"{CATALOG}/dataSets/{dataset_id}")
    assert list(body) == [dataset_id] and body[dataset_id]["tags"]["adobe/pqs/table"] == ["batch_test"]
    assert dataset_id in client.ok("GET", CATALOG + "/dataSets", params={"name": "Batch Test"})
    assert client.call("GET", CATALOG + "/dataSets", params={"limit": 0}).status_code == 400
    assert client.call("GET", f"{CATALOG}/dataSets/nope").status_code == 404
    rows = [{"_acme": {"userid": "u1", "propensity": 0.5}, "person": {"birthYear": 1980}}]
    batch = ingest(client, dataset_id, {"part-0.parquet": parquet_bytes(rows)})
    assert batch["status"] == "success" and batch["metrics"]["outputRecordCount"] == 1
    assert batch["relatedObjects"] == [{"type": "dataSet", "id": dataset_id}]
    lines = b'{"_acme": {"userid": "u2", "propensity": 0.25}}\n{"_acme": {"userid": "u3"}}\n'
    assert ingest(client, dataset_id, {"a.json": lines}, fmt="json")["status"] == "success"
    table = table_of(client, dataset_id)
    got = query_service(client, f"SELECT _acme_userid, _acme_propensity, person_birthyear FROM {table} ORDER BY 1")
    assert got == [("u1", 0.5, 1980), ("u2", 0.25, None), ("u3", None, None)]
    listed = client.ok("GET", CATALOG + "/batches", params={"dataSet": dataset_id})
    assert len(listed) == 2 and batch["id"] in listed
    client.ok("POST", f"{IMPORT}/batches/{batch['id']}?action=REVERT")
    assert query_service(client, f"SELECT count(*) FROM {table}") == [(2,)]
    assert client.ok("GET", f"{CATALOG}/batches/{batch['id']}")[batch["id"]]["status"] == "deleted"


def test_batch_replay_retires_its_predecessors(client: AEPClient) -> None:
    """A replay batch's rows appear as its predecessors' rows go, in one transaction (AEP's batch replay)."""
    _, dataset_id = profile_dataset(client, "Replay Test", profile=False)
    first = ingest(client, dataset_id, {"a.json": json_bytes([{"_acme": {"userid": "old"}}])}, fmt="json")
    second = ingest(
        client, dataset_id, {"b.json": json_bytes([{"_acme": {"userid": "new"}}])}, fmt="json", replay=[first["id"]]
    )
    assert second["status"] == "success"
    assert query_service(client, f"SELECT _acme_userid FROM {table_of(client, dataset_id)}") == [("new",)]
    assert client.ok("GET", f"{CATALOG}/batches/{first['id']}")[first["id"]]["status"] == "deleted"


def test_failed_batches(client: AEPClient) -> None:
    """An undefined leaf or an empty batch fails with AEP's error shape and stores nothing."""
    _, dataset_id = profile_dataset(client, "Failing", profile=False)
    failed = ingest(client, dataset_id, {"x.json": json_bytes([{"_acme": {"userid": "a", "nope": 1}}])}, fmt="json")
    assert failed["status"] == "failed"
    assert failed["errors"][0]["code"] and "_acme.nope" in failed["errors"][0]["description"]
    assert failed["errors"][0]["rows"] == []
    batch = client.ok(
        "POST", IMPORT + "/batches", 201, json={"datasetId": dataset_id, "inputFormat": {"format": "json"}}
    )
    client.ok("POST", f"{IMPORT}/batches/{batch['id']}?action=COMPLETE")
    empty = client.poll(f"{CATALOG}/batches/{batch['id']}", lambda b: b[batch["id"]]["status"] != "staging")
    assert empty[batch["id"]]["errors"][0]["code"] == "106"
    assert query_service(client, f"SELECT count(*) FROM {table_of(client, dataset_id)}") == [(0,)]
    unknown = client.call("POST", IMPORT + "/batches", json={"datasetId": "missing", "inputFormat": {"format": "json"}})
    assert unknown.status_code == 404


def test_large_file_chunks(client: AEPClient) -> None:
    """A large file: INITIALIZE, PATCH chunks with Content-Range, COMPLETE the file, then the batch."""
    _, dataset_id = profile_dataset(client, "Chunked", profile=False)
    batch = client.ok(
        "POST", IMPORT + "/batches", 201, json={"datasetId": dataset_id, "inputFormat": {"format": "parquet"}}
    )
    path = f"{IMPORT}/batches/{batch['id']}/datasets/{dataset_id}/files/big.parquet"
    data = parquet_bytes([{"_acme": {"userid": f"c{i}", "propensity": 0.1}} for i in range(1000)])
    client.ok("POST", path + "?action=INITIALIZE", 201)
    octet = {"Content-Type": "application/octet-stream"}
    for start in range(0, len(data), 1000):
        chunk = data[start : start + 1000]
        client.ok(
            "PATCH", path, data=chunk, headers={**octet, "Content-Range": f"bytes {start}-{start + len(chunk) - 1}"}
        )
    client.ok("POST", path + "?action=COMPLETE", 201)
    client.ok("POST", f"{IMPORT}/batches/{batch['id']}?action=COMPLETE")
    done = client.poll(f"{CATALOG}/batches/{batch['id']}", lambda b: b[batch["id"]]["status"] != "staging")
    assert done[batch["id"]]["status"] == "success" and done[batch["id"]]["metrics"]["outputRecordCount"] == 1000


def test_queries_api(client: AEPClient) -> None:
    """Connection parameters, CTAS through the queries API (registered as a dataset), failures, DROP."""
    params = client.ok("GET", QUERY + "/connection_parameters")
    assert {"host", "port", "dbName", "username", "token"} <= set(params) and params["token"] == client.token
    done = run_query(client, "CREATE TABLE ctas_demo AS SELECT 1 AS x UNION ALL SELECT 2")
    assert done["state"] == "SUCCESS" and done["rowCount"] == 2
    tagged = [
        d for d in client.ok("GET", CATALOG + "/dataSets", params={"limit": 100}).values() if d["name"] == "ctas_demo"
    ]
    assert tagged and tagged[0]["tags"]["adobe/pqs/table"] == ["ctas_demo"]
    failed = run_query(client, "SELECT * FROM no_such_table")
    assert failed["state"] == "FAILED" and failed["errors"][0]["code"] == "42P01"
    assert failed["errors"][0]["errorType"] == "USER_ERROR"
    assert run_query(client, "DROP TABLE ctas_demo")["state"] == "SUCCESS"
    names = {d["name"] for d in client.ok("GET", CATALOG + "/dataSets", params={"limit": 100}).values()}
    assert "ctas_demo" not in names
    assert client.call("GET", QUERY + "/queries/nope").status_code == 404


def test_segmentation_export_and_activation(client: AEPClient, emulator: RunningEmulator) -> None:
    """PQL segments over the union profile (latest batch wins), export jobs, DLZ dataset and audience flows."""
    _, scores = profile_dataset(client, "Seg Scores")
    first = [{"_acme": {"userid": f"u{i}", "propensity": i / 10}} for i in range(10)]
    ingest(client, scores, {"p.parquet": parquet_bytes(first)})
    rescored = [{"_acme": {"userid": "u0", "propensity": 0.95}}]  # a later run's score wins for u0
    ingest(client, scores, {"p.parquet": parquet_bytes(rescored)})
    definition = {
        "name": "high",
        "description": "",
        "ttlInDays": 60,
        "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": "pql/text", "value": "_acme.propensity >= 0.5"},
    }
    segment = client.ok("POST", UPS + "/segment/definitions", json=definition)
    bad = client.call(
        "POST", UPS + "/segment/definitions", json={**definition, "expression": {"value": "_acme.propensity >>"}}
    )
    assert bad.status_code == 400
    patch = [{"op": "replace", "path": "/expression/value", "value": "_acme.propensity >= 0.7"}]
    assert client.ok("PATCH", f"{UPS}/segment/definitions/{segment['id']}", json=patch)["version"] == 2
    job = client.ok("POST", UPS + "/segment/jobs", json=[{"segmentId": segment["id"]}])
    job = client.poll(f"{UPS}/segment/jobs/{job['id']}", lambda j: j["status"] in ("SUCCEEDED", "FAILED"))
    assert job["status"] == "SUCCEEDED", job
    assert job["metrics"]["segmentedProfileCounter"] == {segment["id"]: 4}  # u7, u8, u9 and re-scored u0

    group = field_group(client, {"userid": "string", "propensity": "number"}, title="members")
    members_schema = schema(client, [PROFILE, group["$id"]], title="members")
    members = dataset(client, "Seg Members", members_schema["$id"])
    export = {
        "fields": "_acme.userid,_acme.propensity",
        "filter": {"segments": [{"segmentId": segment["id"], "segmentNs": "ups", "status": ["realized"]}]},
        "destination": {"datasetId": members, "segmentPerBatch": False},
        "schema": {"name": "_xdm.context.profile"},
    }
    export_job = client.ok("POST", UPS + "/export/jobs", json=export)
    export_job = client.poll(f"{UPS}/export/jobs/{export_job['id']}", lambda j: j["status"] in ("SUCCEEDED", "FAILED"))
    assert export_job["status"] == "SUCCEEDED" and export_job["metrics"]["totalExportedProfileCounter"] == 4
    got = query_service(client, f"SELECT _acme_userid, _acme_propensity FROM {table_of(client, members)} ORDER BY 1")
    assert got == [("u0", 0.95), ("u7", 0.7), ("u8", 0.8), ("u9", 0.9)]

    dlz = dataset_export_flow(client, scores)
    audience_flow(client, dlz, segment["id"])


def dataset_export_flow(client: AEPClient, scores: str) -> Path:
    """Export a dataset to the DLZ through a flow and an ad-hoc run; returns the DLZ folder."""
    credentials = client.ok(
        "GET", "/data/foundation/connectors/landingzone/credentials", params={"type": "dlz_destination"}
    )
    assert credentials["containerName"] == "dlz-destination" and credentials["SASUri"].startswith("file://")
    dlz = Path(credentials["SASUri"].removeprefix("file://"))
    spec = {"id": DLZ_CONNECTION_SPEC, "version": "1.0"}
    base = client.ok("POST", FLOWS + "/connections", 201, json={"name": "dlz", "connectionSpec": spec})
    target = {
        "name": "t",
        "baseConnectionId": base["id"],
        "connectionSpec": spec,
        "params": {"path": "exports", "datasetFileType": "PARQUET", "compression": "NONE"},
    }
    target_id = client.ok("POST", FLOWS + "/targetConnections", 201, json=target)["id"]
    source = {
        "name": "s",
        "connectionSpec": {"id": "23598e46-f560-407b-88d5-ea6207e49db0", "version": "1.0"},
        "params": {"datasets": [scores]},
    }
    source_id = client.ok("POST", FLOWS + "/sourceConnections", 201, json=source)["id"]
    flow = {
        "name": "export",
        "flowSpec": {"id": DLZ_FLOW_SPEC, "version": "1.0"},
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
    }
    flow_id = client.ok("POST", FLOWS + "/flows", 201, json=flow)["id"]
    accept = {"Accept": "application/vnd.adobe.adhoc.dataset.activation+json; version=1"}
    run_body = {"activationInfo": {"destinations": [{"flowId": flow_id, "datasets": [{"id": scores}]}]}}
    client.ok("POST", "/data/core/activation/disflowprovider/adhocrun", json=run_body, headers=accept)
    runs = client.poll(f"{FLOWS}/runs?property=flowId=={flow_id}", run_finished)
    run = runs["items"][0]
    assert run["metrics"]["statusSummary"]["status"] == "success", run
    parts = sorted((dlz / "exports" / scores).glob("exportTime=*/part-*.parquet"))
    assert len(parts) == run["metrics"]["fileSummary"]["outputFileCount"] == 1
    exported = pq.read_table(parts[0])
    assert exported.num_rows == 11 and "_emu_batch" not in exported.column_names
    client.ok("POST", "/data/core/activation/disflowprovider/adhocrun", json=run_body, headers=accept)
    client.poll(f"{FLOWS}/runs?property=flowId=={flow_id}", lambda r: len(r["items"]) == 2 and run_finished(r))
    assert len(list((dlz / "exports" / scores).glob("exportTime=*"))) == 2  # each export its own folder
    return dlz


def audience_flow(client: AEPClient, dlz: Path, segment_id: str) -> None:
    """Activate a segment to the DLZ as CSV through a flow patched with If-Match and an ad-hoc run."""
    spec = {"id": DLZ_CONNECTION_SPEC, "version": "1.0"}
    base = client.ok("POST", FLOWS + "/connections", 201, json={"name": "dlz", "connectionSpec": spec})
    target = {"name": "t", "baseConnectionId": base["id"], "connectionSpec": spec}
    flow = {"flowSpec": {"id": DLZ_FLOW_SPEC, "version": "1.0"}}

    audience_target = {**target, "params": {"path": "audiences", "fileType": "csv"}}
    audience_target_id = client.ok("POST", FLOWS + "/targetConnections", 201, json=audience_target)["id"]
    profile_source = {
        "name": "ups",
        "connectionSpec": {"id": "8a9c3494-9708-43d7-ae3f-cda01e5030e1", "version": "1.0"},
        "params": {},
    }
    profile_source_id = client.ok("POST", FLOWS + "/sourceConnections", 201, json=profile_source)["id"]
    transformations = [
        {
            "name": "GeneralTransform",
            "params": {"segmentSelectors": {"selectors": []}, "profileSelectors": {"selectors": []}},
        }
    ]
    audience_flow = {
        **flow,
        "name": "activate",
        "sourceConnectionIds": [profile_source_id],
        "targetConnectionIds": [audience_target_id],
        "transformations": transformations,
    }
    created = client.ok("POST", FLOWS + "/flows", 201, json=audience_flow)
    patch = [
        {
            "op": "add",
            "path": "/transformations/0/params/segmentSelectors/selectors/-",
            "value": {"type": "PLATFORM_SEGMENT", "value": {"id": segment_id, "name": "high"}},
        },
        {
            "op": "add",
            "path": "/transformations/0/params/profileSelectors/selectors/-",
            "value": {"type": "JSON_PATH", "value": {"path": "_acme.propensity"}},
        },
    ]
    stale = client.call("PATCH", f"{FLOWS}/flows/{created['id']}", json=patch, headers={"If-Match": '"stale"'})
    assert stale.status_code == 412
    client.ok("PATCH", f"{FLOWS}/flows/{created['id']}", 200, json=patch, headers={"If-Match": created["etag"]})
    accept = {"Accept": "application/vnd.adobe.adhoc.activation+json; version=2"}
    order = client.ok(
        "POST",
        "/data/core/activation/disflowprovider/adhocrun",
        json={"activationInfo": {created["id"]: [segment_id]}},
        headers=accept,
    )
    assert order["order"][0]["segment"] == segment_id
    runs = client.poll(f"{FLOWS}/runs?property=flowId=={created['id']}", run_finished)
    metrics = runs["items"][0]["metrics"]
    assert metrics["statusSummary"]["status"] == "success", metrics
    assert metrics["recordSummary"]["outputRecordCount"] == 4 and metrics["fileSummary"]["outputFileCount"] == 1
    (csv_file,) = (dlz / "audiences").glob("*.csv")
    table = pacsv.read_csv(csv_file)
    assert table.column_names == ["_acme.userid", "_acme.propensity"] and table.num_rows == 4


def test_faults(client: AEPClient, emulator: RunningEmulator) -> None:
    """Runtime fault switches: 429 with Retry-After, 500, failing batches and short-lived tokens."""
    faults, auth = emulator.url + "/emulator/faults", emulator.bearer()
    try:
        requests.post(
            faults, json={"rate_limit_every": 2, "retry_after": 3}, headers=auth, timeout=5
        ).raise_for_status()
        statuses = [client.call("GET", SR + "/stats") for _ in range(2)]
        assert [r.status_code for r in statuses] == [200, 429] and statuses[1].headers["Retry-After"] == "3"
        requests.post(faults, json={"error_every": 1}, headers=auth, timeout=5).raise_for_status()
        assert client.call("GET", SR + "/stats").status_code == 500
        requests.post(faults, json={"fail_batches": True}, headers=auth, timeout=5).raise_for_status()
        _, dataset_id = profile_dataset(client, "Faulty", profile=False)
        failed = ingest(client, dataset_id, {"x.json": json_bytes([{"_acme": {"userid": "a"}}])}, fmt="json")
        assert failed["status"] == "failed"
        requests.post(faults, json={"batch_delay_seconds": 1}, headers=auth, timeout=5).raise_for_status()
        slow = client.ok(
            "POST", IMPORT + "/batches", 201, json={"datasetId": dataset_id, "inputFormat": {"format": "json"}}
        )
        client.ok(
            "PUT", f"{IMPORT}/batches/{slow['id']}/datasets/{dataset_id}/files/x.json", 201, data=b"[]", headers=OCTET
        )
        client.ok("POST", f"{IMPORT}/batches/{slow['id']}?action=COMPLETE")
        assert client.ok("GET", f"{CATALOG}/batches/{slow['id']}")[slow["id"]]["status"] == "staging"
        requests.post(faults, json={"token_ttl": 1}, headers=auth, timeout=5).raise_for_status()
        short = AEPClient(emulator.url)
        assert fetch_token(emulator.url).json()["expires_in"] == 1
        time.sleep(1.2)
        expired = short.call("GET", SR + "/stats")
        assert expired.status_code == 401 and expired.json()["error_code"] == "401013"
        assert requests.post(faults, json={"nonsense": 1}, headers=auth, timeout=5).status_code == 400
    finally:
        requests.post(faults, json={}, headers=auth, timeout=5).raise_for_status()


def test_restart_keeps_state(client: AEPClient, emulator: RunningEmulator) -> None:
    """After a restart the token, datasets, batches and rows are all still there."""
    _, dataset_id = profile_dataset(client, "Durable", profile=False)
    batch = ingest(
        client, dataset_id, {"x.json": json_bytes([{"_acme": {"userid": "a", "propensity": 1.0}}])}, fmt="json"
    )
    emulator.set_faults({"batch_delay_seconds": 30})
    pending = client.ok(
        "POST", IMPORT + "/batches", 201, json={"datasetId": dataset_id, "inputFormat": {"format": "json"}}
    )
    upload = f"{IMPORT}/batches/{pending['id']}/datasets/{dataset_id}/files/y.json"
    client.ok("PUT", upload, 201, data=json_bytes([{"_acme": {"userid": "b"}}]), headers=OCTET)
    client.ok("POST", f"{IMPORT}/batches/{pending['id']}?action=COMPLETE")
    emulator.restart()  # runtime faults are gone; the staging batch is promoted again
    resumed = client.poll(f"{CATALOG}/batches/{pending['id']}", lambda b: b[pending["id"]]["status"] != "staging")
    assert resumed[pending["id"]]["status"] == "success"
    assert client.ok("GET", f"{CATALOG}/dataSets/{dataset_id}")[dataset_id]["name"] == "Durable"
    assert client.ok("GET", f"{CATALOG}/batches/{batch['id']}")[batch["id"]]["status"] == "success"
    assert query_service(client, f"SELECT _acme_userid FROM {table_of(client, dataset_id)} ORDER BY 1") == [
        ("a",),
        ("b",),
    ]
    assert client.headers["x-api-key"] == CLIENT_ID
