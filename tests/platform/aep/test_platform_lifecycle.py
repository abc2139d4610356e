"""The aep backend against a real emulator: paging, own audiences only, flow clean-up, run failures,
schema healing, batch timeouts, capped Retry-After and the cached tenant."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import yaml

from aep_propensity.platform import ProfileSource, make_platform
from aep_propensity.platform.aep import AEPClient, AEPError, AEPPlatform, Credentials
from aep_propensity.platform.aep import catalog as catalog_module
from aep_propensity.platform.aep import segmentation as segmentation_module
from aep_propensity.platform.aep.contract import (
    BATCH_OK,
    FLOWS,
    JOB_DONE,
    SCHEMAS,
    SEGMENTS,
    XED_JSON,
)
from aep_propensity.platform.aep.ingestion import BatchInDoubt
from aep_propensity.platform.aep.xdm import mapping_for
from aep_propensity.platform.core.destinations import FileDestination
from aep_propensity.platform.core.port import AudienceDefinition, PlatformError
from tests.conftest import PROJECT
from tests.emulator_process import CLIENT_ID, CLIENT_SECRET, ORG_ID, RunningEmulator

from .conftest import aep_config
from .test_platform import EVENTS, PROFILES, SCORES, events_frame, profiles_frame, scores_frame

pytestmark = pytest.mark.postgres

FLOW_COLLECTIONS = ("flows", "sourceConnections", "targetConnections", "connections")
RULE = '_acme.propensity >= 0.5 and loyalty.tier != "bronze"'


def profile_source(**extra_fields: dict) -> ProfileSource:
    """The project's profile source (conf/base/globals.yml) for tenant ``acme``, plus ``extra_fields``."""
    fields = yaml.safe_load((PROJECT / "conf" / "base" / "globals.yml").read_text())["profile_fields"]
    return ProfileSource.from_config({"table": "enriched_profiles", "tenant": "acme", "fields": fields | extra_fields})


def scored_profiles(aep: AEPPlatform) -> None:
    """Six profiles; p0 and p1 score high."""
    aep.ingest(PROFILES, [profiles_frame(6)])
    aep.ingest(SCORES, [scores_frame("run-a", ["p0", "p1"], 0.9, datetime(2026, 10, 1))])
    aep.ingest(SCORES, [scores_frame("run-a", ["p2", "p3", "p4", "p5"], 0.1, datetime(2026, 10, 1))])


def foreign_definition(aep: AEPPlatform, name: str) -> str:
    """A segment definition that is not the project's (someone else's in the same sandbox); its id."""
    body = {
        "name": name,
        "profileInstanceId": "ups",
        "description": "not aep-propensity's",
        "expression": {"type": "PQL", "format": "pql/text", "value": "_acme.propensity >= 0.0"},
        "schema": {"name": "_xdm.context.profile"},
        "ttlInDays": 60,
    }
    return str(aep.client.post(f"{SEGMENTS}/segment/definitions", body)["id"])


def finished_job(aep: AEPPlatform, segment_ids: list[str]) -> str:
    """Run a segment job over ``segment_ids`` directly and wait for it; its id."""
    job = aep.client.post(f"{SEGMENTS}/segment/jobs", [{"segmentId": ident} for ident in segment_ids])
    aep.client.poll(
        lambda: aep.client.get(f"{SEGMENTS}/segment/jobs/{job['id']}"),
        lambda answer: answer.get("status") in JOB_DONE,
        "segment job",
    )
    return str(job["id"])


def flow_objects(aep: AEPPlatform) -> dict[str, int]:
    """How many flows and connections the Flow Service lists."""
    return {name: len(aep.client.get(f"{FLOWS}/{name}")["items"]) for name in FLOW_COLLECTIONS}


def test_catalog_lists_are_read_page_by_page(aep: AEPPlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "CATALOG_PAGE", 2)  # three datasets and three batches of one: two pages each
    ids = [aep.ingest(PROFILES, [profiles_frame(2, offset=10 * i)]).id for i in range(3)]
    ids.append(aep.ingest(EVENTS, [events_frame(4)]).id)
    ids.append(aep.ingest(SCORES, [scores_frame("run-a", ["p0"], 0.5, datetime(2026, 10, 1))]).id)
    assert sorted(r.id for r in aep.batches()) == sorted(ids)
    assert sorted(r.id for r in aep.batches("profiles")) == sorted(ids[:3])
    assert aep.batches("no_such_dataset") == []


def test_only_jobs_of_the_projects_own_audiences_count(aep: AEPPlatform, tmp_path) -> None:
    scored_profiles(aep)
    foreign = foreign_definition(aep, "someone else's")
    record = aep.upsert_audience(AudienceDefinition("likely", RULE, "high scores"), profile_source())
    finished_job(aep, [foreign])  # a sandbox's scheduled jobs cover other segments
    mixed = finished_job(aep, [foreign, record.id])  # ... and ours among others, not necessarily first
    own = aep.evaluate_audience(record.id)
    jobs = aep.audience_jobs(latest_only=False)
    assert sorted(j.id for j in jobs) == sorted([mixed, own.id])
    assert {(j.audience_id, j.audience_name, j.members) for j in jobs} == {(record.id, "likely", 2)}
    assert [j.id for j in aep.audience_jobs()] == [own.id]
    destination = FileDestination("files", str(tmp_path / "out"))
    with pytest.raises(PlatformError, match="evaluated none of this project's audiences"):
        aep.activate([own.id, finished_job(aep, [foreign])], destination, ["email"])
    assert aep.deliveries() == [] and not (tmp_path / "out").exists()  # every job is checked before any is sent


def test_segment_definitions_and_jobs_are_read_page_by_page(aep: AEPPlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    """Needs the emulator's paging of GET /segment/definitions (start, limit, page) and /segment/jobs (_page)."""
    monkeypatch.setattr(segmentation_module, "SEGMENT_PAGE", 1)
    scored_profiles(aep)
    foreign_definition(aep, "first of the sandbox")  # the project's definition is on the second page
    definition = AudienceDefinition("likely", RULE, "high scores")
    record = aep.upsert_audience(definition, profile_source())
    assert aep.upsert_audience(definition, profile_source()).change == "unchanged"  # found, not duplicated
    assert sorted(s["name"] for s in aep.segmentation.definitions()) == ["first of the sandbox", "likely"]
    first, second = aep.evaluate_audience(record.id), aep.evaluate_audience(record.id)
    assert sorted(j.id for j in aep.audience_jobs(latest_only=False)) == sorted([first.id, second.id])


def test_exports_and_activations_delete_their_flows_and_connections(aep: AEPPlatform, tmp_path) -> None:
    """Needs the emulator's DELETE of /sourceConnections, /targetConnections and /connections."""
    scored_profiles(aep)
    aep.create_table_as("scored", "SELECT ecid, score FROM propensity_scores")
    aep.export("scored", str(tmp_path / "egress"))
    record = aep.upsert_audience(AudienceDefinition("likely", RULE, "high scores"), profile_source())
    job = aep.evaluate_audience(record.id)
    [delivery] = aep.activate([job.id], FileDestination("files", str(tmp_path / "out")), ["email"])
    assert delivery.members == 2
    assert flow_objects(aep) == dict.fromkeys(FLOW_COLLECTIONS, 0)


def test_a_refused_activation_raises_its_errors_and_leaves_no_flow(aep: AEPPlatform, tmp_path) -> None:
    scored_profiles(aep)
    source = profile_source(**{"_acme.nowhere": {"column": "nowhere", "type": "string"}})
    record = aep.upsert_audience(AudienceDefinition("likely", RULE, "high scores"), source)
    job = aep.evaluate_audience(record.id)
    destination = FileDestination("files", str(tmp_path / "out"))
    with pytest.raises(AEPError, match=r"FLOW-1400-400: attributes \['_acme\.nowhere'\] are not scalar"):
        aep.activate([job.id], destination, ["nowhere"])
    [failed] = aep.deliveries("files")
    assert (failed.status, failed.job_id) == ("failed", job.id) and "_acme.nowhere" in failed.error
    assert flow_objects(aep)["flows"] == 0  # deleted although the run failed
    assert not (tmp_path / "out").exists()


def test_a_schema_left_half_made_is_healed_by_the_next_run(aep: AEPPlatform) -> None:
    mapping = mapping_for(PROFILES, "acme")
    group = aep.client.post(f"{SCHEMAS}/tenant/fieldgroups", mapping.field_group_json())
    schema = aep.client.post(f"{SCHEMAS}/tenant/schemas", mapping.schema_json(group["$id"]))
    # a run stopped here: no identity descriptor, not enabled for Profile

    def identity_descriptors() -> list[str]:
        answer = aep.client.get(f"{SCHEMAS}/tenant/descriptors")["results"]
        return [d["xdm:sourceProperty"] for d in answer if d["xdm:sourceSchema"] == schema["$id"]]

    aep.ingest(PROFILES, [profiles_frame(3)])
    assert identity_descriptors() == ["/_acme/userid"]
    healed = aep.client.get(f"{SCHEMAS}/tenant/schemas/{schema['meta:altId']}", headers={"Accept": XED_JSON})
    assert healed["meta:immutableTags"] == ["union"]
    aep.ingest(PROFILES, [profiles_frame(3)])
    assert identity_descriptors() == ["/_acme/userid"]  # made sure of, not made again
    assert aep.handle("profiles").row_count == 6


def test_a_batch_still_staging_at_the_poll_timeout_is_named_and_superseded_by_the_next_replace(
    aep: AEPPlatform, emulator: RunningEmulator
) -> None:
    """A completed batch not done at the poll timeout gets an ABORT; AEP (and the emulator) refuse it once the
    batch is past loading, so the error says the batch may still land and names it, its dataset and its run.
    The next replacing batch waits for it to land and supersedes it."""
    first = aep.ingest(PROFILES, [profiles_frame(2)])
    impatient = make_platform(*aep_config(emulator, poll_timeout_seconds=0.5))
    emulator.set_faults({"batch_delay_seconds": 2})
    try:
        with pytest.raises(BatchInDoubt, match="may still land") as caught:
            impatient.ingest(PROFILES, [profiles_frame(3, offset=10)])
        [late] = [r for r in aep.batches("profiles") if r.id != first.id]
        message = str(caught.value)
        assert f"batch {late.id} of dataset 'profiles' (run {impatient.run_id})" in message
        assert "not finished after 0.5 s" in message and late.run_id == impatient.run_id != first.run_id
        replacing = aep.ingest(PROFILES, [profiles_frame(1, offset=20)], replace=True)  # while the late one lands
    finally:
        emulator.set_faults({})
    statuses = {r.id: r.status for r in aep.batches("profiles")}
    assert statuses[late.id] not in BATCH_OK and statuses[first.id] not in BATCH_OK  # both superseded
    assert [i for i, status in statuses.items() if status in BATCH_OK] == [replacing.id]
    assert aep.query("SELECT ecid FROM profiles")["ecid"].tolist() == ["p20"]


def test_retry_after_sleeps_are_capped(emulator: RunningEmulator) -> None:
    client = AEPClient(
        Credentials(CLIENT_ID, CLIENT_SECRET, ORG_ID),
        "prod",
        base_url=emulator.url,
        ims_url=emulator.url,
        retries=2,
        backoff_factor=0,
        max_retry_after_seconds=0.2,
    )
    client.token()
    emulator.set_faults({"rate_limit_every": 2, "retry_after": 600})
    try:
        started = time.monotonic()
        for _ in range(3):
            assert client.get(f"{SCHEMAS}/stats", headers={"Accept": XED_JSON})["tenantId"] == "acme"
        assert time.monotonic() - started < 10  # not 600 s per 429
        assert emulator.injected_faults() >= 1
    finally:
        emulator.set_faults({})


def test_the_tenant_is_read_once_per_instance(aep: AEPPlatform, emulator: RunningEmulator) -> None:
    assert aep.tenant == "acme"
    emulator.set_faults({"error_every": 1})  # any further GET /stats would meet a 500
    try:
        assert aep.tenant == "acme" and emulator.injected_faults() == 0
    finally:
        emulator.set_faults({})


def test_connection_parameters_are_fetched_once_per_token(aep: AEPPlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    get = aep.client.get

    def counting_get(path: str, **kwargs):
        if path.endswith("/query/connection_parameters"):
            fetched.append(path)
        return get(path, **kwargs)

    monkeypatch.setattr(aep.client, "get", counting_get)
    aep.ingest(PROFILES, [profiles_frame(3)])
    aep.create_table_as("copied", "SELECT * FROM profiles")
    assert aep.handle("copied").row_count == 3 and aep.exists("profiles")
    assert len(fetched) == 1  # one token: one set of parameters for every connection and query
    aep.client.renew_token()
    assert len(aep.query("SELECT ecid FROM copied")) == 3 and len(aep.query("SELECT 1 AS n")) == 1
    assert len(fetched) == 2


def test_sql_errors_are_aep_errors_with_the_query_services_message(aep: AEPPlatform) -> None:
    with pytest.raises(AEPError, match=r'Query Service error 42P01: relation "no_such_table" does not exist'):
        aep.query("SELECT * FROM no_such_table")
    with pytest.raises(AEPError, match="Query Service error 42703"):
        aep.query("SELECT no_such_column FROM (SELECT 1 AS n) AS t")
    assert not aep.exists("no_such_table")
