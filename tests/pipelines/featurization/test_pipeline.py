"""Featurization: point-in-time features worked out by hand, parity of the engines, EDA, the export, a run."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from pydantic import ValidationError

from aep_propensity.datasets import PlatformExportDataset
from aep_propensity.parameters import TimeDesign
from aep_propensity.pipelines.featurization import nodes
from aep_propensity.pipelines.featurization.params import FeaturizationParams
from aep_propensity.platform import TableHandle, make_platform
from benchmarks.common import catalog_spec
from tests.conftest import platform_config
from tests.pipelines.data_generation.test_pipeline import generated_tables
from tests.pipelines.data_generation.test_pipeline import make_params as generation_params
from tests.simulation.helpers import WINDOW

PROJECT = Path(__file__).resolve().parents[3]
EVENTS = catalog_spec("experience_events")
PROFILES = catalog_spec("profiles")
BASE = yaml.safe_load((PROJECT / "conf/base/parameters_featurization.yml").read_text())["featurization"]
BASE_TIME = yaml.safe_load((PROJECT / "conf/base/parameters_time_design.yml").read_text())["time_design"]
FEATURES = FeaturizationParams(**BASE)


def feature_params(**overrides) -> FeaturizationParams:
    """The base featurization parameters with ``overrides``."""
    return FeaturizationParams(**{**BASE, **overrides})


def time_design(**overrides) -> TimeDesign:
    """The base time design over a 10-week window from 2026-01-05, with ``overrides``."""
    return TimeDesign(**{**BASE_TIME, "window": {"start": "2026-01-05T00:00:00", "weeks": 10}, **overrides})


def events_frame(rows: list[tuple]) -> pd.DataFrame:
    """Events from (ecid, eventType, timestamp) rows, with the other columns filled."""
    frame = pd.DataFrame(rows, columns=["ecid", "eventType", "timestamp"])
    frame.insert(0, "_id", [f"e{i}" for i in range(len(frame))])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[us]")
    for column in EVENTS.column_names[4:]:
        frame[column] = np.nan
    return frame


def profiles_frame(ecids: list[str]) -> pd.DataFrame:
    """One profile per ecid with fixed attributes."""
    return pd.DataFrame(
        {
            "ecid": ecids,
            "email": [f"{e}@example.com" for e in ecids],
            "gender": "female",
            "birth_year": 1990,
            "state": "CA",
            "loyalty_tier": "gold",
            "loyalty_points": 1_000,
            "loyalty_join_date": date(2020, 3, 2),
        }
    )


# Cutoff 2026-03-02 00:00, lookback 56 days (from the window start), horizon 7 days (to 03-09).
HAND_BUILT = events_frame(
    [
        ("A", "directMarketing.emailSent", "2026-02-27 10:00:00"),
        ("A", "directMarketing.emailOpened", "2026-03-02 00:00:00"),  # exactly at the cutoff: not a feature
        ("A", "web.formFilledOut", "2026-03-05 12:00:00"),  # inside the horizon: label 1
        ("B", "web.webpagedetails.pageViews", "2026-01-20 08:00:00"),
        ("B", "web.formFilledOut", "2026-02-01 00:00:00"),  # converted before the cutoff: not in training
        ("C", "web.webpagedetails.pageViews", "2026-02-10 06:00:00"),
        ("C", "web.formFilledOut", "2026-03-10 00:00:00"),  # after the horizon: label 0
        ("E", "directMarketing.emailSent", "2026-01-10 00:00:00"),
        ("E", "directMarketing.emailSent", "2026-02-20 09:00:00"),
        ("E", "directMarketing.emailOpened", "2026-02-21 09:00:00"),
        ("E", "directMarketing.emailClicked", "2026-02-21 12:00:00"),
        ("E", "directMarketing.emailSent", "2025-12-01 00:00:00"),  # outside the window: excluded
        ("E", "web.unknownThing", "2026-02-22 00:00:00"),  # unknown type: excluded
        ("F", "web.formFilledOut", "2026-03-02 00:00:00"),  # conversion exactly at the cutoff: label 1
    ]
)
HAND_TIME = time_design(cutoff="2026-03-02T00:00:00", horizon_days=7)


def test_point_in_time_features_by_hand(platform):
    platform.ingest(EVENTS, [HAND_BUILT], replace=True)
    # Ingestion refuses null identities; a table loaded another way may still hold them.
    with platform.engine.connect() as conn:
        platform.engine.fetchall(
            conn,
            """INSERT INTO "experience_events" ("_id", ecid, "eventType", "timestamp")
                                        VALUES ('orphan', NULL, 'directMarketing.emailSent', '2026-02-22')""",
        )
    platform.ingest(PROFILES, [profiles_frame(["A", "B", "C", "D", "E", "F"])], replace=True)
    events, profiles = platform.handle("experience_events"), platform.handle("profiles")
    platform.create_table_as("training_features", nodes.build_training_features(events, profiles, FEATURES, HAND_TIME))
    got = platform.query('SELECT * FROM "training_features" ORDER BY ecid').set_index("ecid")

    assert list(got.index) == ["A", "C", "D", "E", "F"]  # B converted before the cutoff
    assert got["label"].to_dict() == {"A": 1, "C": 0, "D": 0, "E": 0, "F": 1}
    assert got.loc["A", ["n_email_sent_56d", "n_email_sent_7d", "n_email_opened_56d"]].tolist() == [1, 1, 0]
    assert got.loc["A", "days_since_email_sent"] == pytest.approx(2 + 14 / 24)
    assert got.loc["A", "days_since_email_opened"] == 56  # none before the cutoff: the lookback length
    assert got.loc["C", ["n_page_views_56d", "n_page_views_28d", "n_page_views_7d"]].tolist() == [1, 1, 0]
    assert got.loc["D", "n_events"] == 0 and got.loc["D", "days_since_page_views"] == 56
    assert got.loc["D", "email_open_rate"] == 0.0
    assert got.loc["E", ["n_email_sent_56d", "n_email_opened_56d", "n_email_clicked_56d"]].tolist() == [2, 1, 1]
    assert got.loc["E", ["email_open_rate", "email_click_rate"]].tolist() == [0.5, 1.0]
    assert got.loc["E", ["n_events", "active_days"]].tolist() == [4, 3]
    assert got.loc["F", "n_events"] == 0
    assert got.loc["A", "tenure_days"] == (date(2026, 3, 2) - date(2020, 3, 2)).days
    assert got.loc["A", "age"] == 2026 - 1990

    platform.create_table_as("scoring_features", nodes.build_scoring_features(events, profiles, FEATURES, HAND_TIME))
    scoring = platform.query('SELECT ecid, converted, n_email_opened_56d FROM "scoring_features"').set_index("ecid")
    assert scoring["converted"].to_dict() == {"A": True, "B": True, "C": True, "D": False, "E": False, "F": True}
    assert scoring.loc["A", "n_email_opened_56d"] == 1  # at the scoring time the opened email is history

    platform.create_table_as("data_quality", nodes.report_data_quality(events, FEATURES, HAND_TIME))
    quality = platform.query('SELECT * FROM "data_quality"').iloc[0].to_dict()
    assert quality == {"events": 15, "null_identity": 1, "unknown_event_type": 1, "outside_window": 1, "excluded": 3}


def generated_data(people: int = 2_000) -> tuple[pa.Table, pa.Table]:
    """Events and profiles from the simulator."""
    return generated_tables(generation_params(people=people, people_per_chunk=people))


@pytest.mark.parametrize("feature_set", ["point_in_time", "cmle"])
def test_engines_compute_identical_features(feature_set, tmp_path, pg_schema):
    events, profiles = generated_data()
    params, time = feature_params(feature_set=feature_set), time_design(window=WINDOW)
    frames = {}
    for engine, schema in (("duckdb", None), ("postgres", pg_schema)):
        platform = make_platform(*platform_config(engine, tmp_path, schema))
        platform.ingest(EVENTS, [events], replace=True)
        platform.ingest(PROFILES, [profiles], replace=True)
        handles = platform.handle("experience_events"), platform.handle("profiles")
        for name, build in (("training", nodes.build_training_features), ("scoring", nodes.build_scoring_features)):
            platform.create_table_as(f"{name}_features", build(*handles, params, time))
            rows = platform.read_batches(f'SELECT * FROM "{name}_features"')
            frame = pa.Table.from_batches(list(rows)).to_pandas().sort_values("ecid", ignore_index=True)
            frames[engine, name] = frame
    for name in ("training", "scoring"):
        duck, pg = frames["duckdb", name], frames["postgres", name]
        assert len(duck) > 1_000
        assert all(
            dtype.kind in "iufbM" or name in ("ecid", "event_type", "loyalty_tier", "gender", "state")
            for name, dtype in duck.dtypes.items()
        ), duck.dtypes  # no decimals or objects
        pd.testing.assert_frame_equal(duck, pg, check_dtype=False)


def test_eda_matches_pandas(platform):
    events, profiles = generated_data(1_000)
    platform.ingest(EVENTS, [events], replace=True)
    platform.ingest(PROFILES, [profiles], replace=True)
    handle = platform.handle("experience_events")
    frame = events.to_pandas()
    platform.create_table_as("eda_funnel", nodes.explore_funnel(handle))
    funnel = platform.query('SELECT * FROM "eda_funnel"')
    expected = frame.groupby("eventType")["ecid"].nunique()
    assert funnel["people"].tolist() == [expected[name] for name in funnel["event_type"]]
    platform.create_table_as("eda_overview", nodes.explore_overview(handle, platform.handle("profiles")))
    overview = platform.query('SELECT * FROM "eda_overview"').iloc[0]
    assert (overview["events"], overview["people_with_events"], overview["profiles"]) == (
        len(frame),
        frame["ecid"].nunique(),
        1_000,
    )
    platform.create_table_as("eda_correlation", nodes.explore_correlation(handle, feature_params()))
    correlation = platform.query('SELECT * FROM "eda_correlation"').set_index("event_type")["correlation"]
    per_person = pd.crosstab(frame["ecid"], frame["eventType"])
    converted = (per_person["web.formFilledOut"] > 0).astype(float)
    for name in ("directMarketing.emailClicked", "commerce.productViews"):
        assert correlation[name] == pytest.approx(per_person[name].corr(converted))
    platform.create_table_as("eda_precedence", nodes.explore_precedence(handle))
    precedence = platform.query('SELECT * FROM "eda_precedence"').set_index(["first_type", "later_type"])
    assert precedence.loc[("directMarketing.emailSent", "directMarketing.emailSent"), "share"] == 1.0
    assert precedence["share"].between(0, 1).all()
    for plot, table in (
        (nodes.plot_funnel, funnel),
        (nodes.plot_correlation, correlation.reset_index()),
        (nodes.plot_precedence, precedence.reset_index()),
    ):
        assert plot(table).axes


def test_export_dataset_round_trip(platform, tmp_path, engine_name):
    platform.ingest(PROFILES, [profiles_frame([f"p{i}" for i in range(30)])], replace=True)
    platform.exports.rows_per_file = 10
    config, credentials = platform_config(engine_name, tmp_path, getattr(platform.engine, "schema", None))
    dataset = PlatformExportDataset(
        table="profiles", path=f"memory://{tmp_path.name}/dlz/egress", platform=config, credentials=credentials
    )
    assert not dataset.exists()
    dataset.save(platform.handle("profiles"))
    first = dataset.load()
    assert len(first) == 30 and first.attrs["export_path"].startswith("memory://")
    assert "/dlz/egress/profiles/exportTime=" in first.attrs["export_path"]
    platform.ingest(PROFILES, [profiles_frame(["late"])])
    dataset.save(platform.handle("profiles"))
    second = dataset.load()
    assert len(second) == 31 and second.attrs["export_time"] > first.attrs["export_time"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"cutoff": "2026-01-20T00:00:00"}, "starts before the data window"),
        ({"cutoff": "2026-03-10T00:00:00"}, "ends after the data window"),
        ({"lookback_days": 90}, "starts before the data window"),
        ({"scoring_time": "2027-01-01T00:00:00"}, "scoring_time"),
    ],
)
def test_bad_windows_are_clear_errors(override, message):
    with pytest.raises(ValidationError, match=message):
        time_design(**override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"event_types": ["web.formFilledOut"]}, "must not include the conversion event"),
        ({"event_types": ["drop table x"]}, "not event type names"),
    ],
)
def test_bad_event_types_are_clear_errors(override, message):
    with pytest.raises(ValidationError, match=message):
        feature_params(**override)


def test_recent_days_must_lie_inside_the_lookback():
    events = TableHandle("experience_events", tuple(EVENTS.column_names), 1)
    profiles = TableHandle("profiles", tuple(PROFILES.column_names), 1)
    with pytest.raises(ValueError, match="recent_days must each be between 1 and lookback_days - 1"):
        nodes.build_training_features(events, profiles, feature_params(recent_days=[7, 56]), time_design())


def test_missing_column_is_named():
    events = TableHandle("experience_events", ("_id", "ecid", "timestamp"), 10)
    with pytest.raises(ValueError, match="has no column 'eventType'"):
        nodes.build_training_features(events, TableHandle("profiles", ("ecid",), 1), FEATURES, time_design())


def test_kedro_run_featurization(tmp_path, kedro_session):
    with kedro_session() as session:
        session.run(pipeline_names=["data_generation", "featurization"])
    with kedro_session() as session:
        catalog = session.load_context().catalog
        training = catalog.load("training_data")
        quality = catalog.load("data_quality@handle")
    assert 1_500 < len(training) <= 3_000 and set(training["label"]) == {0, 1}
    assert training.attrs["export_time"]
    assert quality.row_count == 1
    for plot in ("eda_funnel", "eda_events_per_day", "eda_precedence", "eda_correlation"):
        assert (tmp_path / f"data/08_reporting/{plot}.png").stat().st_size > 10_000
    assert datetime.strptime(training.attrs["export_time"], "%Y%m%d%H%M%S")
