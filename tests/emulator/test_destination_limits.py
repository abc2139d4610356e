"""The emulator's guardrails for destinations, crossed cheaply by a raw client (the ``limits`` fault lowers
them): audiences and attributes per dataflow and scalar profile attributes only (a 400 of the Flow Service,
on create and on PATCH), exported files split at ``rows_per_file``, and Data Landing Zone files deleted
once older than ``dlz_retention_days``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from tests.emulator_process import RunningEmulator

from .conftest import AEPClient
from .helpers import FLOWS, UPS, ingest, parquet_bytes, profile_dataset

pytestmark = pytest.mark.postgres

DLZ_SPEC = {"id": "10440537-2a7b-4583-ac39-ed38d4b848e8", "version": "1.0"}
DLZ_FLOW_SPEC = {"id": "cd2fc47e-e838-4f38-a581-8fff2f99b63a", "version": "1.0"}
ADHOC = "/data/core/activation/disflowprovider/adhocrun"
MEMBERS = 7


@pytest.fixture(scope="module")
def seeded(client: AEPClient) -> dict[str, str]:
    """A profile dataset of seven profiles, one segment of them all evaluated: the dataset and segment ids."""
    _, dataset_id = profile_dataset(client, "Destination limits")
    rows = [{"_acme": {"userid": f"u{i}", "propensity": i / 10}} for i in range(MEMBERS)]
    assert ingest(client, dataset_id, {"p.parquet": parquet_bytes(rows)})["status"] == "success"
    definition = {
        "name": "all",
        "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": "pql/text", "value": "_acme.propensity >= 0.0"},
    }
    segment = client.ok("POST", UPS + "/segment/definitions", json=definition)
    job = client.ok("POST", UPS + "/segment/jobs", json=[{"segmentId": segment["id"]}])
    assert (
        client.poll(f"{UPS}/segment/jobs/{job['id']}", lambda j: j["status"] != "PROCESSING")["status"] == "SUCCEEDED"
    )
    return {"dataset": dataset_id, "segment": segment["id"]}


@pytest.fixture
def limits(emulator: RunningEmulator) -> Iterator[None]:
    """Small limits for one test (2 audiences, 2 attributes, 3 rows per file, 1 day), then AEP's again."""
    small = {"max_audiences": 2, "max_attributes": 2, "rows_per_file": 3, "dlz_retention_days": 1}
    emulator.set_faults({"limits": small})
    yield
    emulator.set_faults({})


def dlz(client: AEPClient) -> Path:
    """The Data Landing Zone destination container's folder."""
    answer = client.ok("GET", "/data/foundation/connectors/landingzone/credentials", params={"type": "dlz_destination"})
    return Path(answer["SASUri"].removeprefix("file://"))


def segment_selector(ident: str) -> dict[str, Any]:
    """A segment selector of ``ident``."""
    return {"type": "PLATFORM_SEGMENT", "value": {"id": ident, "name": ident}}


def profile_selector(path: str) -> dict[str, Any]:
    """A profile selector of XDM ``path``."""
    return {"type": "JSON_PATH", "value": {"path": path}}


def flow_body(client: AEPClient, folder: str, source: dict[str, Any], segments: list, paths: list) -> dict[str, Any]:
    """A DLZ flow's body into ``folder`` (a new target connection) with segment and profile selectors."""
    base = client.ok("POST", FLOWS + "/connections", 201, json={"name": "dlz", "connectionSpec": DLZ_SPEC})
    target = {"name": "t", "baseConnectionId": base["id"], "connectionSpec": DLZ_SPEC, "params": {"path": folder}}
    params = {
        "segmentSelectors": {"selectors": [segment_selector(ident) for ident in segments]},
        "profileSelectors": {"selectors": [profile_selector(path) for path in paths]},
    }
    return {
        "name": "limits",
        "flowSpec": DLZ_FLOW_SPEC,
        "sourceConnectionIds": [client.ok("POST", FLOWS + "/sourceConnections", 201, json=source)["id"]],
        "targetConnectionIds": [client.ok("POST", FLOWS + "/targetConnections", 201, json=target)["id"]],
        "transformations": [{"name": "GeneralTransform", "params": params}],
    }


def profile_flow(client: AEPClient, folder: str, segments: list, paths: list) -> dict[str, Any]:
    """An audience activation flow's body from the profile store."""
    source = {"name": "ups", "connectionSpec": {"id": "8a9c3494-9708-43d7-ae3f-cda01e5030e1", "version": "1.0"}}
    return flow_body(client, folder, source, segments, paths)


def assert_refused(response: requests.Response, words: str) -> None:
    """``response`` is the Flow Service's 400 problem document with ``words`` in its detail."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"].endswith("FLOW-1400-400") and words in body["detail"], body


def finished_run(client: AEPClient, flow_id: str) -> dict[str, Any]:
    """The flow's newest run, polled until it is no longer processing."""
    runs = client.poll(
        f"{FLOWS}/runs?property=flowId=={flow_id}",
        lambda r: bool(r["items"]) and r["items"][0]["metrics"]["statusSummary"]["status"] != "processing",
    )
    return runs["items"][0]


@pytest.mark.usefixtures("limits")
def test_audiences_and_attributes_past_the_limits_are_refused(client: AEPClient, seeded: dict[str, str]) -> None:
    """Creating a flow with 3 audiences or 3 attributes is a 400; so is a PATCH that adds a third."""
    paths = ["_acme.userid", "_acme.propensity"]
    assert_refused(
        client.call("POST", FLOWS + "/flows", json=profile_flow(client, "a", ["s1", "s2", "s3"], paths)),
        "at most 2 audiences",
    )
    assert_refused(
        client.call("POST", FLOWS + "/flows", json=profile_flow(client, "a", ["s1"], [*paths, "_acme.userid"])),
        "at most 2 attributes",
    )
    created = client.ok("POST", FLOWS + "/flows", 201, json=profile_flow(client, "a", ["s1", "s2"], paths))
    url = f"{FLOWS}/flows/{created['id']}"
    third = [
        {"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-", "value": segment_selector("s3")}
    ]
    assert_refused(client.call("PATCH", url, json=third, headers={"If-Match": created["etag"]}), "at most 2 audiences")
    flow = client.ok("GET", url)["items"][0]
    assert flow["etag"] == created["etag"]  # unchanged
    assert len(flow["transformations"][0]["params"]["segmentSelectors"]["selectors"]) == 2


@pytest.mark.parametrize("path", ["commerce.order.priceTotal", "_acme.scores[0]", "segmentMembership.ups"])
def test_only_scalar_profile_attributes_are_exportable(client: AEPClient, seeded: dict[str, str], path: str) -> None:
    """An event field, an array element or a map is no scalar profile attribute: refused on create and on
    PATCH; identityMap's identities are allowed."""
    body = profile_flow(client, "a", [seeded["segment"]], ["_acme.userid", path])
    assert_refused(client.call("POST", FLOWS + "/flows", json=body), "not scalar profile attributes")
    created = client.ok("POST", FLOWS + "/flows", 201, json=profile_flow(client, "a", [], ["identityMap.ECID"]))
    patch = [
        {"op": "add", "path": "/transformations/0/params/profileSelectors/selectors/-", "value": profile_selector(path)}
    ]
    refused = client.call("PATCH", f"{FLOWS}/flows/{created['id']}", json=patch, headers={"If-Match": created["etag"]})
    assert_refused(refused, "not scalar profile attributes")


@pytest.mark.usefixtures("limits")
def test_an_activation_past_rows_per_file_is_split(client: AEPClient, seeded: dict[str, str]) -> None:
    """Seven members at three rows per file: ``name.csv``, ``name_2.csv``, ``name_3.csv``, each with the
    header (the identity, then the selected attribute), every member once; the run's outputFiles an object."""
    segments, paths = [seeded["segment"]], ["_acme.propensity"]
    created = client.ok("POST", FLOWS + "/flows", 201, json=profile_flow(client, "split", segments, paths))
    accept = {"Accept": "application/vnd.adobe.adhoc.activation+json; version=2"}
    client.ok("POST", ADHOC, json={"activationInfo": {created["id"]: [seeded["segment"]]}}, headers=accept)
    run = finished_run(client, created["id"])
    assert run["metrics"]["statusSummary"]["status"] == "success", run
    files = sorted((dlz(client) / "split").glob("*.csv"))
    stem = files[0].name.removesuffix(".csv")
    assert [file.name for file in files] == [f"{stem}.csv", f"{stem}_2.csv", f"{stem}_3.csv"]
    tables = [pacsv.read_csv(file) for file in files]
    assert [table.num_rows for table in tables] == [3, 3, 1] and all(
        t.column_names == ["_acme.userid", *paths] for t in tables
    )
    members = sorted(value for table in tables for value in table.column("_acme.userid").to_pylist())
    assert members == [f"u{i}" for i in range(MEMBERS)]
    extensions = run["metrics"]["statusSummary"]["extensions"]
    assert extensions["outputFiles"] == {"count": 3, "files": [str(file) for file in files]}
    assert run["metrics"]["fileSummary"]["outputFileCount"] == 3


@pytest.mark.usefixtures("limits")
def test_a_dataset_export_past_rows_per_file_is_split(client: AEPClient, seeded: dict[str, str]) -> None:
    """Seven rows at three rows per file: three Parquet parts, every row once."""
    source = {
        "name": "s",
        "connectionSpec": {"id": "23598e46-f560-407b-88d5-ea6207e49db0", "version": "1.0"},
        "params": {"datasets": [seeded["dataset"]]},
    }
    body = flow_body(client, "datasets", source, [], [])
    del body["transformations"]
    flow_id = client.ok("POST", FLOWS + "/flows", 201, json=body)["id"]
    accept = {"Accept": "application/vnd.adobe.adhoc.dataset.activation+json; version=1"}
    activation = {"destinations": [{"flowId": flow_id, "datasets": [{"id": seeded["dataset"]}]}]}
    client.ok("POST", ADHOC, json={"activationInfo": activation}, headers=accept)
    assert finished_run(client, flow_id)["metrics"]["statusSummary"]["status"] == "success"
    parts = sorted((dlz(client) / "datasets" / seeded["dataset"]).glob("exportTime=*/part-*.parquet"))
    assert [pq.read_metadata(part).num_rows for part in parts] == [3, 3, 1]
    userids = sorted(value for part in parts for value in pq.read_table(part).column("_acme_userid").to_pylist())
    assert userids == [f"u{i}" for i in range(MEMBERS)]


@pytest.mark.usefixtures("limits")
def test_dlz_files_older_than_the_retention_are_deleted(client: AEPClient, seeded: dict[str, str]) -> None:
    """At one day's retention, a run deletes a file (and its folder) last modified two days ago and keeps a
    fresh one."""
    old, fresh = dlz(client) / "old" / "stale.csv", dlz(client) / "fresh.csv"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text("a\n1\n")
    fresh.write_text("a\n1\n")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(old.parent, (two_days_ago, two_days_ago))
    created = client.ok("POST", FLOWS + "/flows", 201, json=profile_flow(client, "expiry", [seeded["segment"]], []))
    accept = {"Accept": "application/vnd.adobe.adhoc.activation+json; version=2"}
    client.ok("POST", ADHOC, json={"activationInfo": {created["id"]: [seeded["segment"]]}}, headers=accept)
    assert finished_run(client, created["id"])["metrics"]["statusSummary"]["status"] == "success"
    assert not old.exists() and not old.parent.exists() and fresh.exists()


@pytest.mark.parametrize(
    "transformations",
    [
        [],
        "x",
        [1],
        [{"params": []}],
        [{"params": {"profileSelectors": []}}],
        [{"params": {"profileSelectors": {"selectors": 3}}}],
    ],
)
def test_a_flow_of_another_shape_is_no_server_error(client: AEPClient, transformations: Any) -> None:
    """Transformations of unexpected shapes carry no selectors: the guardrails pass them, never a 500."""
    body = {**profile_flow(client, "a", [], []), "transformations": transformations}
    assert client.call("POST", FLOWS + "/flows", json=body).status_code in (201, 400)
