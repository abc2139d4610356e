"""An independent AEP client, aepp 0.6.0, driving the emulator (its global endpoint and IMS token endpoint
pointed at the emulator)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.conftest import AEPP_INSTALL, require_module
from tests.emulator_process import CLIENT_ID, CLIENT_SECRET, ORG_ID, TENANT, RunningEmulator

from .helpers import rows_over

pytestmark = pytest.mark.postgres


@pytest.fixture
def configured_aepp(emulator: RunningEmulator) -> Iterator[ModuleType]:
    """aepp configured for the emulator: its two module globals overridden before any module is built."""
    require_module("aepp", AEPP_INSTALL)
    aepp = importlib.import_module("aepp")
    saved_global = aepp.config.endpoints["global"]
    aepp.configure(org_id=ORG_ID, client_id=CLIENT_ID, secret=CLIENT_SECRET, scopes="openid,AdobeID", sandbox="dev")
    aepp.config.endpoints["global"] = emulator.url
    aepp.config.config_object["oauthTokenEndpointV2"] = emulator.url + "/ims/token/v3"
    yield aepp
    aepp.config.endpoints["global"] = saved_global


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
