"""Activation: audiences equal independent counts, upserts, reach, file and HTTP destinations, the report."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

import numpy as np
import pandas as pd
import pytest
import requests

from aep_propensity.datasets import PlatformDestinationDataset
from aep_propensity.pipelines.activation import nodes
from aep_propensity.pipelines.activation.params import ActivationParams, PropensityRange
from aep_propensity.pipelines.scoring.nodes import build_enriched_profiles
from aep_propensity.platform import (
    ActivationRequest,
    AudienceDefinition,
    Column,
    DatasetSpec,
    Field,
    PlatformError,
    ProfileSource,
)
from aep_propensity.platform.core.destinations import FileDestination, HttpDestination
from aep_propensity.platform.core.pql import PqlError
from tests.conftest import loopback_receiver, platform_config
from tests.pipelines.scoring.test_pipeline import SCORES

PROFILES = DatasetSpec(
    "profiles",
    (Column("ecid", "string"), Column("gender", "string"), Column("loyalty_tier", "string")),
    identity="ecid",
)
SOURCE = ProfileSource(
    "enriched_profiles",
    {
        "_acme.propensity": Field("propensity", "number"),
        "person.gender": Field("gender", "string"),
        "loyalty.tier": Field("loyalty_tier", "string"),
    },
)
PARAMS = ActivationParams(
    tenant="acme",
    tiers={"high": 0.1, "medium": 0.2},
    histogram_bins=1000,
    ranges=[PropensityRange(name="moderate_to_high", min=0.2, max=0.93)],
)


def scores_frame(run_id: str, seed: int, people: int = 2_000) -> pd.DataFrame:
    """One scoring run's rows: every tenth person converted (no score)."""
    rng = np.random.default_rng(seed)
    converted = np.arange(people) % 10 == 0
    score = np.where(converted, np.nan, rng.beta(0.6, 4, people))
    return pd.DataFrame(
        {
            "ecid": [f"p{i:05d}" for i in range(people)],
            "score": score,
            "decile": pd.array(np.where(converted, pd.NA, 1 + (score * 10).clip(0, 9).astype(int)), dtype="Int64"),
            "converted": converted,
            "model_id": "m1",
            "run_id": run_id,
            "scored_at": pd.Timestamp("2026-10-12") + pd.Timedelta(days=seed),
        }
    )


@pytest.fixture
def scored(platform):
    """A platform with profiles, two scoring runs and the enriched_profiles view."""
    people = [f"p{i:05d}" for i in range(2_000)]
    platform.ingest(
        PROFILES,
        [
            pd.DataFrame(
                {
                    "ecid": people,
                    "gender": np.where(np.arange(2_000) % 2, "male", "female"),
                    "loyalty_tier": np.where(np.arange(2_000) % 3, "member", "gold"),
                }
            )
        ],
        replace=True,
    )
    platform.ingest(SCORES, [scores_frame("run-1", 1)])
    platform.ingest(SCORES, [scores_frame("run-2", 2)])
    sql = build_enriched_profiles(platform.handle("profiles"), platform.handle("propensity_scores"))
    platform.create_view("enriched_profiles", sql)
    return platform


def histogram(platform) -> pd.DataFrame:
    """The score histogram, computed on the platform."""
    platform.create_table_as(
        "score_histogram", nodes.explore_score_histogram(platform.handle("enriched_profiles"), PARAMS)
    )
    return platform.query('SELECT * FROM "score_histogram"')


def evaluate(platform, definitions):
    """Upsert and evaluate every definition; their jobs by audience name."""
    jobs = {}
    for definition in definitions:
        record = platform.upsert_audience(definition, SOURCE)
        jobs[definition.name] = platform.evaluate_audience(record.id)
    return jobs


def test_membership_equals_an_independent_count_of_the_latest_run(scored):
    latest = scores_frame("run-2", 2).merge(
        pd.DataFrame(
            {"ecid": [f"p{i:05d}" for i in range(2_000)], "gender": np.where(np.arange(2_000) % 2, "male", "female")}
        ),
        on="ecid",
    )
    rules = {
        "moderate": (
            "_acme.propensity >= 0.2 and _acme.propensity <= 0.93",
            (latest["score"] >= 0.2) & (latest["score"] <= 0.93),
        ),
        "male_likely": (
            'person.gender = "male" and _acme.propensity > 0.3',
            (latest["gender"] == "male") & (latest["score"] > 0.3),
        ),
        "not_high": ("not _acme.propensity >= 0.5", latest["score"] < 0.5),
    }
    jobs = evaluate(scored, [AudienceDefinition(name, rule) for name, (rule, _) in rules.items()])
    for name, (_, expected) in rules.items():
        assert jobs[name].members == int(expected.sum()), name
        members = scored.query(f"SELECT ecid FROM audience_membership WHERE audience_name = '{name}' ORDER BY ecid")
        assert members["ecid"].tolist() == sorted(latest.loc[expected, "ecid"])


def test_reach_prediction_equals_the_evaluated_count(scored):
    table = histogram(scored)
    definitions = nodes.define_audiences(table, PARAMS)
    assert [d.name for d in definitions] == ["high", "medium", "low", "moderate_to_high"]
    jobs = evaluate(scored, definitions)
    predicted = nodes.predict_reach(table, PARAMS).set_index("audience")["predicted_reach"]
    assert {name: job.members for name, job in jobs.items()} == predicted.to_dict()
    scored_people = 1_800
    assert jobs["high"].members == pytest.approx(0.1 * scored_people, abs=15)
    assert jobs["medium"].members == pytest.approx(0.2 * scored_people, abs=15)
    assert jobs["high"].members + jobs["medium"].members + jobs["low"].members == scored_people
    reach = nodes.reach_by_threshold(table, PARAMS)
    assert reach["reach"].iloc[0] == scored_people and reach["reach"].is_monotonic_decreasing
    assert sorted(nodes.plot_reach(table, PARAMS)) == [
        "reach_bands.png",
        "reach_by_threshold.png",
        "score_histogram.png",
    ]


def test_upsert_by_name(scored):
    first = scored.upsert_audience(AudienceDefinition("a", "_acme.propensity >= 0.5"), SOURCE)
    same = scored.upsert_audience(AudienceDefinition("a", "_acme.propensity >= 0.5"), SOURCE)
    changed = scored.upsert_audience(AudienceDefinition("a", "_acme.propensity >= 0.6"), SOURCE)
    assert (first.change, same.change, changed.change) == ("created", "unchanged", "updated")
    assert first.id == same.id == changed.id and changed.version == 2
    with pytest.raises(PqlError, match="unknown field 'person.age'"):
        scored.upsert_audience(AudienceDefinition("b", "person.age > 3"), SOURCE)


def test_file_destination_writes_files_and_manifests_once(scored, tmp_path):
    jobs = evaluate(scored, [AudienceDefinition("high", "_acme.propensity >= 0.4")])
    destination = FileDestination("cloud_storage", str(tmp_path / "out"), "csv")
    [delivery] = scored.activate([jobs["high"].id], destination, ["gender", "propensity"])
    files = sorted((tmp_path / "out" / "high").iterdir())
    assert [f.suffix for f in files] == [".csv", ".json"]
    written = pd.read_csv(files[0])
    assert list(written.columns) == ["ecid", "gender", "propensity"]
    assert len(written) == delivery.members == jobs["high"].members and (written["propensity"] >= 0.4).all()
    manifest = json.loads(files[1].read_text())
    assert manifest["files"][0] == {"name": files[0].name, "rows": len(written), "bytes": files[0].stat().st_size}
    assert scored.activate([jobs["high"].id], destination, ["gender"]) == []  # no duplicate
    assert len(scored.activate([jobs["high"].id], destination, ["gender"], force=True)) == 1


class Receiver(BaseHTTPRequestHandler):
    """A loopback audience endpoint that fails some requests: 500 on the first try of every third batch,
    429 (Retry-After: 0) on the first try of every fifth; it keeps what it accepted by idempotency key."""

    accepted: dict[str, list] = {}
    attempts: dict[str, int] = {}
    always_fail = False

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        key = self.headers["Idempotency-Key"]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        tries = self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.always_fail or (body["batch"] % 3 == 0 and tries == 1):
            self.send_response(500)
        elif body["batch"] % 5 == 0 and tries == 1:
            self.send_response(429)
            self.send_header("Retry-After", "0")
        else:
            self.accepted[key] = body["members"]
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.fixture
def receiver():
    """The flaky endpoint on a free loopback port."""
    Receiver.accepted, Receiver.attempts, Receiver.always_fail = {}, {}, False
    with loopback_receiver(Receiver) as url:
        yield url


def test_http_destination_retries_and_delivers_each_member_once(scored, receiver):
    jobs = evaluate(scored, [AudienceDefinition("everyone", "_acme.propensity >= 0")])
    destination = HttpDestination(
        "webhook", receiver, batch_size=100, timeout_seconds=5, retries=3, backoff_factor=0.01
    )
    [delivery] = scored.activate([jobs["everyone"].id], destination, ["propensity"])
    received = [member["ecid"] for batch in Receiver.accepted.values() for member in batch]
    assert len(received) == len(set(received)) == jobs["everyone"].members == delivery.members == 1_800
    assert delivery.requests == 18 and sum(Receiver.attempts.values()) == 18 + 6 + 2  # retried 500s and 429s


def test_http_destination_failure_is_recorded(scored, receiver):
    Receiver.always_fail = True
    jobs = evaluate(scored, [AudienceDefinition("everyone", "_acme.propensity >= 0")])
    destination = HttpDestination("webhook", receiver, batch_size=500, retries=2, backoff_factor=0.01)
    with pytest.raises(requests.HTTPError, match="batch 0 of audience 'everyone' failed with HTTP 500"):
        scored.activate([jobs["everyone"].id], destination, [])
    [delivery] = scored.deliveries("webhook")
    assert delivery.status == "failed" and "HTTP 500" in delivery.error


def test_activation_report_from_the_ledger(scored, tmp_path, engine_name):
    table = histogram(scored)
    evaluate(scored, nodes.define_audiences(table, PARAMS))
    jobs = pd.DataFrame([j.__dict__ for j in scored.audience_jobs()]).rename(columns={"id": "job_id"})
    config, credentials = platform_config(engine_name, tmp_path, getattr(scored.engine, "schema", None))
    files = PlatformDestinationDataset(
        platform=config,
        credentials=credentials,
        attributes=["propensity"],
        destination={"type": "files", "name": "cloud", "path": str(tmp_path / "o")},
    )
    idle = PlatformDestinationDataset(
        platform=config,
        credentials=credentials,
        enabled=False,
        destination={"type": "http", "name": "hook", "url": "http://127.0.0.1:9/x"},
    )
    request = nodes.request_activation(jobs, PARAMS)
    assert isinstance(request, ActivationRequest) and len(request.job_ids) == 4
    files.save(request)
    idle.save(request)
    report = nodes.build_activation_report(jobs, nodes.predict_reach(table, PARAMS), files.load(), idle.load())
    assert report["status"].tolist() == ["success"] * 4
    assert (report["members"] == report["predicted_reach"]).all()
    assert (report["files"] == 1).all() and (report["bytes"] > 0).all()


def test_unknown_job_is_refused(scored, tmp_path):
    with pytest.raises(PlatformError, match="does not exist or did not succeed"):
        scored.activate(["0" * 32], FileDestination("x", str(tmp_path)), [])
    with pytest.raises(PlatformError, match="not an audience job id"):
        scored.activate(["'; DROP TABLE x; --"], FileDestination("x", str(tmp_path)), [])
