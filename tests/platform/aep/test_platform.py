"""The aep backend against a real emulator: ingest, views, queries, CTAS, export, scores, errors, faults."""

from __future__ import annotations

import logging
from datetime import date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from aep_propensity.platform import ProfileSource, identifier, make_platform
from aep_propensity.platform.aep import AEPError, AEPPlatform
from aep_propensity.platform.aep.contract import CATALOG, FLOWS
from aep_propensity.platform.core.destinations import FileDestination
from aep_propensity.platform.core.port import AudienceDefinition, PlatformError
from aep_propensity.sql import render_template
from benchmarks.common import catalog_spec
from tests.conftest import PROJECT
from tests.emulator_process import CLIENT_SECRET, RunningEmulator

from .conftest import aep_config

pytestmark = pytest.mark.postgres

PROFILES = catalog_spec("profiles")
EVENTS = catalog_spec("experience_events")
SCORES = catalog_spec("propensity_scores")


def profiles_frame(n: int, offset: int = 0) -> pd.DataFrame:
    """``n`` profiles with ecids ``p<offset>..``."""
    return pd.DataFrame(
        {
            "ecid": [f"p{offset + i}" for i in range(n)],
            "email": [f"p{offset + i}@example.org" for i in range(n)],
            "gender": ["female" if i % 2 else "male" for i in range(n)],
            "birth_year": [1970 + i for i in range(n)],
            "state": ["CA" if i % 3 else "NY" for i in range(n)],
            "loyalty_tier": ["gold" if i % 4 == 0 else "silver" for i in range(n)],
            "loyalty_points": [100 * i for i in range(n)],
            "loyalty_join_date": [date(2020, 1, 1 + i % 28) for i in range(n)],
        }
    )


def events_frame(n: int) -> pd.DataFrame:
    """``n`` web and email events of three people."""
    return pd.DataFrame(
        {
            "_id": [f"e{i}" for i in range(n)],
            "ecid": [f"p{i % 3}" for i in range(n)],
            "eventType": ["web.webpagedetails.pageViews" if i % 2 else "directMarketing.emailOpened" for i in range(n)],
            "timestamp": [datetime(2026, 8, 3, 0, i % 60) for i in range(n)],
            "web_webpagedetails_pageviews": [1.0 if i % 2 else 0.0 for i in range(n)],
            "web_webinteraction_linkclicks": [0.0] * n,
            "directmarketing_sends": [0.0] * n,
            "directmarketing_opens": [0.0 if i % 2 else 1.0 for i in range(n)],
            "directmarketing_clicks": [0.0] * n,
        }
    )


def scores_frame(run_id: str, ecids: list[str], score: float, at: datetime) -> pd.DataFrame:
    """One scoring run's rows."""
    return pd.DataFrame(
        {
            "ecid": ecids,
            "score": [score] * len(ecids),
            "decile": [3] * len(ecids),
            "converted": [False] * len(ecids),
            "model_id": ["m1"] * len(ecids),
            "run_id": [run_id] * len(ecids),
            "scored_at": [at] * len(ecids),
        }
    )


def test_ingest_defines_the_flat_view_and_queries_read_it(aep: AEPPlatform) -> None:
    batch = aep.ingest(EVENTS, [events_frame(30), events_frame(12)], replace=True)
    assert (batch.dataset, batch.status, batch.rows, batch.files) == ("experience_events", "success", 42, 2)
    handle = aep.handle("experience_events")
    assert handle.columns == tuple(EVENTS.column_names) and handle.row_count == 42
    counts = aep.query(
        'SELECT ecid, "eventType", count(*) AS n, sum(web_webpagedetails_pageviews) AS views '
        "FROM experience_events GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert counts["n"].sum() == 42
    assert set(counts["ecid"]) == {"p0", "p1", "p2"}
    assert aep.exists("experience_events") and not aep.exists("no_such_table")
    records = aep.batches("experience_events")
    assert [r.id for r in records] == [batch.id] and records[0].status == "success"


def test_profile_types_round_trip_and_replace_replays_and_retires_the_old_batch(aep: AEPPlatform) -> None:
    first = aep.ingest(PROFILES, [profiles_frame(5)], replace=True)
    second = aep.ingest(PROFILES, [profiles_frame(3, offset=100)], replace=True)
    frame = aep.query("SELECT * FROM profiles ORDER BY ecid")
    assert list(frame["ecid"]) == ["p100", "p101", "p102"]
    assert list(frame["loyalty_points"]) == [0, 100, 200]
    assert frame["loyalty_join_date"].iloc[0] == date(2020, 1, 1)
    assert [r.id for r in aep.batches("profiles") if r.status == "success"] == [second.id]
    batches = {r.id: r.status for r in aep.batches("profiles")}
    assert batches == {first.id: "deleted", second.id: "success"}
    [(_, created)] = aep.client.get(f"{CATALOG}/batches/{second.id}").items()
    assert created["replay"] == {"predecessors": [first.id], "reason": "replace"}  # AEP's batch replay


def test_interactive_row_limit(emulator: RunningEmulator) -> None:
    platform = make_platform(*aep_config(emulator, interactive_row_limit=10))
    platform.ingest(PROFILES, [profiles_frame(11)])
    assert len(platform.query("SELECT * FROM profiles LIMIT 9")) == 9
    with pytest.raises(PlatformError, match="reached the interactive row limit of 10; read bulk data through export"):
        platform.query("SELECT * FROM profiles LIMIT 10")  # AEP may cut a result at its cap: the cap is an overflow
    with pytest.raises(PlatformError, match="reached the interactive row limit of 10"):
        platform.query("SELECT * FROM profiles")
    small = list(platform.read_batches("SELECT * FROM profiles LIMIT 9", batch_rows=4))
    assert [batch.num_rows for batch in small] == [4, 4, 1]  # under the limit: interactively
    at_limit = pa.Table.from_batches(list(platform.read_batches("SELECT * FROM profiles LIMIT 10", batch_rows=4)))
    assert at_limit.num_rows == 10  # at the limit: through an export, as query() would refuse it
    exported = pa.Table.from_batches(list(platform.read_batches("SELECT * FROM profiles", batch_rows=4)))
    assert sorted(exported.column("ecid").to_pylist()) == sorted(f"p{i}" for i in range(11))  # beyond: an export
    scratch = platform.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name LIKE '_read_%'")
    assert scratch["n"].iloc[0] == 0  # the scratch table of the export is gone


def test_large_files_are_uploaded_in_parts(emulator: RunningEmulator) -> None:
    platform = make_platform(*aep_config(emulator, upload_file_bytes=2_000))  # AEP's threshold is 256 MB
    record = platform.ingest(PROFILES, [profiles_frame(300), profiles_frame(300, offset=300)])
    assert (record.rows, record.files) == (600, 2)
    frame = platform.query("SELECT ecid, birth_year FROM profiles")
    assert sorted(frame["ecid"]) == sorted(f"p{i}" for i in range(600))


def test_ctas_and_export(aep: AEPPlatform, tmp_path) -> None:
    aep.ingest(EVENTS, [events_frame(40)])
    handle = aep.create_table_as(
        "event_counts", 'SELECT ecid, "eventType", count(*) AS events FROM experience_events GROUP BY 1, 2'
    )
    assert handle.columns == ("ecid", "eventType", "events") and handle.row_count == 6
    record = aep.export("event_counts", str(tmp_path / "egress"))
    assert (record.table, record.rows) == ("event_counts", 6) and record.files >= 1
    parts = sorted((tmp_path / "egress" / "event_counts").glob(f"exportTime={record.export_time}/part-*.parquet"))
    assert len(parts) == record.files
    table = pq.read_table(parts[0].parent)
    assert table.column_names == ["ecid", "eventType", "events"]  # mixed case kept
    assert sorted(set(table.column("ecid").to_pylist())) == ["p0", "p1", "p2"]
    again = aep.create_table_as("event_counts", "SELECT ecid, count(*) AS events FROM experience_events GROUP BY 1")
    assert again.row_count == 3  # replaced
    assert aep.export("event_counts", str(tmp_path / "egress")).rows == 3
    assert aep.client.get(f"{FLOWS}/flows")["items"] == []  # each export's flow is deleted after its run


def test_scores_of_each_run_never_duplicate(aep: AEPPlatform) -> None:
    """The mechanism: every run is its own batch with its run_id; enriched_profiles takes the latest run."""
    aep.ingest(PROFILES, [profiles_frame(4)])
    ecids = [f"p{i}" for i in range(4)]
    aep.ingest(SCORES, [scores_frame("run-a", ecids, 0.2, datetime(2026, 10, 1))], replace=False)
    aep.ingest(SCORES, [scores_frame("run-b", ecids, 0.7, datetime(2026, 10, 2))], replace=False)
    sql = render_template(
        "enriched_profiles.sql", scores=identifier("propensity_scores"), profiles=identifier("profiles")
    )
    aep.create_view("enriched_profiles", sql)
    enriched = aep.query("SELECT ecid, propensity, run_id FROM enriched_profiles ORDER BY ecid")
    assert list(enriched["ecid"]) == ecids  # one row per profile
    assert set(enriched["run_id"]) == {"run-b"} and set(enriched["propensity"]) == {0.7}
    history = aep.query("SELECT run_id, count(*) AS n FROM propensity_scores GROUP BY 1 ORDER BY 1")
    assert history.to_dict("list") == {"run_id": ["run-a", "run-b"], "n": [4, 4]}


def test_a_failed_batch_leaves_nothing_visible(aep: AEPPlatform, emulator: RunningEmulator) -> None:
    aep.ingest(SCORES, [scores_frame("run-a", ["p1"], 0.2, datetime(2026, 10, 1))])
    emulator.set_faults({"fail_batches": True})
    with pytest.raises(AEPError, match="batch .* failed"):
        aep.ingest(SCORES, [scores_frame("run-b", ["p1"], 0.9, datetime(2026, 10, 2))])
    emulator.set_faults({})
    assert list(aep.query("SELECT run_id FROM propensity_scores")["run_id"]) == ["run-a"]


def test_transient_429_and_500_are_retried(aep: AEPPlatform, emulator: RunningEmulator) -> None:
    emulator.set_faults({"rate_limit_every": 3, "retry_after": 1})
    aep.ingest(PROFILES, [profiles_frame(3)])
    emulator.set_faults({"error_every": 4})
    assert aep.handle("profiles").row_count == 3
    emulator.set_faults({})


def test_a_wrong_secret_gives_aeps_error(emulator: RunningEmulator) -> None:
    config, credentials = aep_config(emulator)
    platform = make_platform(config, {**credentials, "client_secret": "wrong-secret"})
    with pytest.raises(AEPError) as caught:
        platform.query("SELECT 1")
    error = caught.value
    assert error.status in (400, 401) and error.code
    assert "IMS token request failed" in str(error)
    assert "wrong-secret" not in str(error) and "wrong-secret" not in repr(platform)


def test_a_wrong_token_gives_the_gateway_error(aep: AEPPlatform) -> None:
    aep.client.token()
    aep.client._token = "not-a-token"  # noqa: SLF001 - a token the gateway does not know, renewed once
    assert aep.tenant == "acme"
    with pytest.raises(AEPError) as caught:
        aep.client.call("GET", "/data/foundation/catalog/dataSets", headers={"x-api-key": "someone-else"})
    assert caught.value.status == 403 and caught.value.code == "403003"


def test_no_token_or_secret_in_logs_errors_or_reprs(aep: AEPPlatform, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    aep.ingest(PROFILES, [profiles_frame(2)])
    aep.query("SELECT count(*) FROM profiles")
    with pytest.raises(AEPError) as caught:
        aep.queries.run_query("SELECT * FROM missing_table", "bad query")
    token = aep.client.token()
    texts = [caplog.text, str(caught.value), repr(aep), repr(aep.client), repr(aep.client.credentials)]
    for text in texts:
        assert token not in text and CLIENT_SECRET not in text
    assert "missing_table" in str(caught.value)


def test_audiences_are_evaluated_and_activated_once(aep: AEPPlatform, tmp_path) -> None:
    fields = yaml.safe_load((PROJECT / "conf" / "base" / "globals.yml").read_text())["profile_fields"]
    source = ProfileSource.from_config({"table": "enriched_profiles", "tenant": "acme", "fields": fields})
    aep.ingest(PROFILES, [profiles_frame(6)])
    aep.ingest(SCORES, [scores_frame("run-a", [f"p{i}" for i in range(6)], 0.9, datetime(2026, 10, 1))])
    aep.ingest(SCORES, [scores_frame("run-b", ["p0", "p1"], 0.8, datetime(2026, 10, 2))])
    aep.ingest(SCORES, [scores_frame("run-b", ["p2", "p3", "p4", "p5"], 0.1, datetime(2026, 10, 2))])
    definition = AudienceDefinition("likely", '_acme.propensity >= 0.5 and loyalty.tier != "bronze"', "high scores")
    record = aep.upsert_audience(definition, source)
    assert record.change == "created"
    assert aep.upsert_audience(definition, source).change == "unchanged"
    job = aep.evaluate_audience(record.id)
    assert (job.status, job.members, job.audience_name) == ("SUCCEEDED", 2, "likely")  # the latest batch wins
    assert [j.id for j in aep.audience_jobs()] == [job.id]

    destination = FileDestination("cloud_storage", str(tmp_path / "out"))
    attributes = ["email", "loyalty_tier", "propensity"]
    [delivery] = aep.activate([job.id], destination, attributes)
    assert (delivery.status, delivery.members, delivery.files) == ("success", 2, 1)
    [written] = (tmp_path / "out" / "likely").glob("*.csv")
    frame = pd.read_csv(written)
    assert list(frame.columns) == ["ecid", *attributes]
    assert sorted(frame["ecid"]) == ["p0", "p1"] and set(frame["propensity"]) == {0.8}
    assert aep.activate([job.id], destination, attributes) == []  # already delivered
    assert len(aep.activate([job.id], destination, attributes, force=True)) == 1
    assert [d.job_id for d in aep.deliveries("cloud_storage")] == [job.id, job.id]
    assert aep.deliveries("elsewhere") == []
