"""An independent AEP client, aepp 0.6.0, driving the emulator (its global endpoint and IMS token endpoint
pointed at the emulator)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import AEPP_INSTALL, require_module
from tests.emulator_process import CLIENT_ID, CLIENT_SECRET, ORG_ID, TENANT, RunningEmulator, running_emulator

from .helpers import rows_over

pytestmark = pytest.mark.postgres


@contextmanager
def aepp_for(emulator: RunningEmulator) -> Iterator[ModuleType]:
    """aepp configured for ``emulator``: its two module globals overridden before any module is built."""
    require_module("aepp", AEPP_INSTALL)
    aepp = importlib.import_module("aepp")
    saved_global = aepp.config.endpoints["global"]
    aepp.configure(org_id=ORG_ID, client_id=CLIENT_ID, secret=CLIENT_SECRET, scopes="openid,AdobeID", sandbox="dev")
    aepp.config.endpoints["global"] = emulator.url
    aepp.config.config_object["oauthTokenEndpointV2"] = emulator.url + "/ims/token/v3"
    try:
        yield aepp
    finally:
        aepp.config.endpoints["global"] = saved_global


@pytest.fixture
def configured_aepp(emulator: RunningEmulator) -> Iterator[ModuleType]:
    """aepp configured for the module's emulator."""
    with aepp_for(emulator) as aepp:
        yield aepp


@pytest.fixture
def aepp_alone(tmp_path: Path) -> Iterator[ModuleType]:
    """aepp configured for an emulator of its own, whose union profile holds only this test's profiles."""
    with running_emulator(tmp_path / "emulator") as emulator, aepp_for(emulator) as aepp:
        yield aepp


def test_aepp_ingests_and_reads_back(configured_aepp: ModuleType) -> None:
    """Schema, dataset, JSON batch through aepp; Catalog says success; the rows come back over psycopg2."""
    registry = importlib.import_module("aepp.schema").Schema()
    assert registry.getTenantId() == TENANT
    group = registry.createFieldGroup(
        {
            "title": "aepp scores",
            "type": "object",
            "definitions": {
                "customFields": {
                    "type": "object",
                    "properties": {
                        f"_{TENANT}": {
                            "type": "object",
                            "properties": {"userid": {"type": "string"}, "propensity": {"type": "number"}},
                        }
                    },
                }
            },
        }
    )
    profile_schema = registry.createProfileSchema("aepp scores", fieldGroupIds=[group["$id"]])
    identity = registry.createDescriptor(
        sourceSchema=profile_schema["$id"], sourceProperty=f"/_{TENANT}/userid", namespace="ECID", primary=True
    )
    assert identity["@id"]

    cat = importlib.import_module("aepp.catalog").Catalog()
    created = cat.createDataSet(name="aepp scores", schemaId=profile_schema["$id"], profileEnabled=True)
    dataset_id = created[0].split("/")[-1]
    table = cat.getDataSet(dataset_id)[dataset_id]["tags"]["adobe/pqs/table"][0]

    ingest = importlib.import_module("aepp.ingestion").DataIngestion()
    batch = ingest.createBatch(datasetId=dataset_id, format="parquet")
    rows = [{f"_{TENANT}": {"userid": f"e{i}", "propensity": i / 4}} for i in range(4)]
    ingest.uploadSmallFile(batchId=batch["id"], datasetId=dataset_id, filePath="scores.json", data=rows)
    ingest.uploadSmallFileFinish(batchId=batch["id"])
    deadline = time.monotonic() + 20
    while (status := cat.getBatch(batch["id"])[batch["id"]]["status"]) == "staging" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == "success"

    service = importlib.import_module("aepp.queryservice").QueryService()
    query = service.postQueries(
        name="ctas",
        dbname="dev:all",
        sql=f"CREATE TABLE aepp_high AS SELECT * FROM {table} WHERE _{TENANT}_propensity > 0.3",
    )
    while (state := service.getQuery(query["id"])["state"]) not in (
        "SUCCESS",
        "FAILED",
    ) and time.monotonic() < deadline + 20:
        time.sleep(0.1)
    assert state == "SUCCESS"
    params = service.connection()
    rows = rows_over(params, f"SELECT _{TENANT}_userid, _{TENANT}_propensity FROM {table} ORDER BY 1")
    assert rows == [("e0", 0.0), ("e1", 0.25), ("e2", 0.5), ("e3", 0.75)]
    assert rows_over(params, "SELECT count(*) FROM aepp_high") == [(2,)]


#: Segment rules over ``_acme``'s userid, propensity, tier and points, each with its membership computed
#: in plain Python from the ingested rows: a NULL field makes a comparison unknown (not a member), and
#: ``not`` of unknown is still unknown, as PQL's three-valued logic has it.
RULES: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "number": ("_acme.propensity >= 0.5", lambda r: r["propensity"] is not None and r["propensity"] >= 0.5),
    "and": (
        '_acme.propensity > 0.2 and _acme.tier = "gold"',
        lambda r: r["propensity"] is not None and r["propensity"] > 0.2 and r["tier"] == "gold",
    ),
    "or_in": (
        '_acme.tier in ["gold", "silver"] or _acme.points < 100',
        lambda r: r["tier"] in ("gold", "silver") or (r["points"] is not None and r["points"] < 100),
    ),
    "not": ('not _acme.tier = "bronze"', lambda r: r["tier"] is not None and r["tier"] != "bronze"),
    "not_in": ('_acme.tier notIn ["gold"]', lambda r: r["tier"] is not None and r["tier"] != "gold"),
    "null": ("_acme.tier.isNull()", lambda r: r["tier"] is None),
    "string": (
        '_acme.userid.startsWith("u1") and _acme.points != 300',
        lambda r: r["userid"].startswith("u1") and r["points"] is not None and r["points"] != 300,
    ),
    "nested": (
        "(_acme.points >= 200 or _acme.propensity.isNull()) and not (_acme.propensity < 0.1)",
        lambda r: (
            (r["points"] is not None and r["points"] >= 200 or r["propensity"] is None)
            and r["propensity"] is not None
            and not r["propensity"] < 0.1
        ),
    ),
}


def profile_rows() -> list[dict[str, Any]]:
    """Twelve profiles; every fourth lacks a tier, every fifth points, every seventh a propensity."""
    tiers = ["gold", "silver", "bronze"]
    rows = []
    for i in range(12):
        fields: dict[str, Any] = {"userid": f"u{i}"}
        if i % 4 != 3:
            fields["tier"] = tiers[i % 3]
        if i % 5 != 4:
            fields["points"] = float(50 * i)
        if i % 7 != 6:
            fields["propensity"] = round(i / 12, 3)
        rows.append(fields)
    return rows


def test_aepp_segments_match_membership_computed_in_python(aepp_alone: ModuleType) -> None:
    """Segment definitions created, evaluated and exported through aepp: each one's members are those the
    test computes from the ingested rows, so a bug of the compiler the emulator and the backend share
    (src/aep_propensity/platform/core/pql.py) cannot pass unseen."""
    registry = importlib.import_module("aepp.schema").Schema()
    properties = {"userid": "string", "propensity": "number", "tier": "string", "points": "number"}
    group = registry.createFieldGroup(
        {
            "title": "aepp segment fields",
            "type": "object",
            "definitions": {
                "customFields": {
                    "type": "object",
                    "properties": {
                        f"_{TENANT}": {
                            "type": "object",
                            "properties": {name: {"type": kind} for name, kind in properties.items()},
                        }
                    },
                }
            },
        }
    )
    profile_schema = registry.createProfileSchema("aepp segment profiles", fieldGroupIds=[group["$id"]])
    registry.createDescriptor(
        sourceSchema=profile_schema["$id"], sourceProperty=f"/_{TENANT}/userid", namespace="ECID", primary=True
    )
    cat = importlib.import_module("aepp.catalog").Catalog()
    dataset_id = cat.createDataSet(name="aepp segment profiles", schemaId=profile_schema["$id"], profileEnabled=True)
    dataset_id = dataset_id[0].split("/")[-1]
    ingest = importlib.import_module("aepp.ingestion").DataIngestion()
    batch = ingest.createBatch(datasetId=dataset_id, format="json")
    rows = profile_rows()
    ingest.uploadSmallFile(
        batchId=batch["id"], datasetId=dataset_id, filePath="p.json", data=[{f"_{TENANT}": r} for r in rows]
    )
    ingest.uploadSmallFileFinish(batchId=batch["id"])
    assert wait_for(lambda: cat.getBatch(batch["id"])[batch["id"]]["status"], ("success", "failed")) == "success"

    segmentation = importlib.import_module("aepp.segmentation").Segmentation()
    segments = {
        name: segmentation.createSegment(
            {
                "name": f"aepp {name}",
                "description": rule,
                "ttlInDays": 30,
                "schema": {"name": "_xdm.context.profile"},
                "expression": {"type": "PQL", "format": "pql/text", "value": rule},
            }
        )["id"]
        for name, (rule, _) in RULES.items()
    }
    job = segmentation.createJob(list(segments.values()))
    assert wait_for(lambda: segmentation.getJob(job["id"])["status"], ("SUCCEEDED", "FAILED")) == "SUCCEEDED"

    members_schema = registry.createProfileSchema("aepp members", fieldGroupIds=[group["$id"]])
    service = importlib.import_module("aepp.queryservice").QueryService()
    for name, (rule, member) in RULES.items():
        expected = sorted(r["userid"] for r in ({**dict.fromkeys(properties), **r} for r in rows) if member(r))
        assert expected, name  # every rule selects someone, and
        assert len(expected) < len(rows), name  # leaves someone out
        assert exported_members(cat, segmentation, service, members_schema["$id"], segments[name]) == expected, rule


def exported_members(cat: Any, segmentation: Any, service: Any, schema_id: str, segment_id: str) -> list[str]:
    """The userids of a segment's members, exported through aepp into a new dataset and read over Query Service."""
    created = cat.createDataSet(name=f"members {segment_id}", schemaId=schema_id)[0].split("/")[-1]
    export = segmentation.createExport(
        {
            "fields": f"_{TENANT}.userid",
            "filter": {"segments": [{"segmentId": segment_id, "segmentNs": "ups", "status": ["realized"]}]},
            "destination": {"datasetId": created, "segmentPerBatch": False},
            "schema": {"name": "_xdm.context.profile"},
        }
    )
    assert wait_for(lambda: segmentation.getExport(export["id"])["status"], ("SUCCEEDED", "FAILED")) == "SUCCEEDED"
    table = cat.getDataSet(created)[created]["tags"]["adobe/pqs/table"][0]
    return [userid for (userid,) in rows_over(service.connection(), f"SELECT _{TENANT}_userid FROM {table} ORDER BY 1")]


def wait_for(status: Callable[[], str], final: tuple[str, ...], timeout: float = 30) -> str:
    """Poll ``status()`` until it is one of ``final`` or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while (value := status()) not in final and time.monotonic() < deadline:
        time.sleep(0.1)
    return value
