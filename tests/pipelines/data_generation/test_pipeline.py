"""The data_generation pipeline: calibration, fidelity to the original, determinism, a Kedro run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from pydantic import ValidationError

from aep_propensity.pipelines.data_generation.nodes import (
    draw_person_latents,
    record_simulation_truth,
    simulate_events,
    simulate_profiles,
)
from aep_propensity.pipelines.data_generation.original import (
    ORIGINAL_CONVERTING_SHARE,
    ORIGINAL_EVENT_COUNTS,
    ORIGINAL_EVENTS,
)
from aep_propensity.pipelines.data_generation.params import DataGenerationParams
from aep_propensity.pipelines.data_generation.simulator import TYPE_NAMES, clipped_walk, simulate_chunk

PROJECT = Path(__file__).resolve().parents[3]


def make_params(**overrides) -> DataGenerationParams:
    """The base parameters file, with the globals it refers to and ``overrides``."""
    raw = yaml.safe_load((PROJECT / "conf/base/parameters_data_generation.yml").read_text())["data_generation"]
    raw.update({"start": "2026-08-03T00:00:00", "weeks": 10, **overrides})
    return DataGenerationParams(**raw)


def type_counts(params: DataGenerationParams, seeds: range) -> dict[str, float]:
    """Mean count per event type per 100,000 people over ``seeds``."""
    totals = np.zeros(len(TYPE_NAMES))
    for seed in seeds:
        p = params.model_copy(update={"seed": seed})
        latents = draw_person_latents(p)
        rng = np.random.default_rng(seed)
        events = simulate_chunk(latents["engagement"].to_numpy(), p, rng)
        totals += np.bincount(events.code, minlength=len(TYPE_NAMES))
    scale = 100_000 / (params.people * len(seeds))
    return {name: totals[code] * scale for code, name in enumerate(TYPE_NAMES)}


def test_cmle_mode_reproduces_the_original_run():
    counts = type_counts(make_params(mode="cmle", people=50_000), range(2))
    total = sum(counts.values())
    assert abs(total / ORIGINAL_EVENTS - 1) < 0.015
    assert abs(counts["web.formFilledOut"] / 100_000 - ORIGINAL_CONVERTING_SHARE) < 0.005
    for name, original in ORIGINAL_EVENT_COUNTS.items():
        tolerance = 0.03 if original >= 10_000 else 0.08
        assert abs(counts[name] / original - 1) < tolerance, name


def test_default_mode_is_calibrated():
    counts = type_counts(make_params(people=50_000), range(2))
    per_person = sum(counts.values()) / 100_000
    assert 9 <= per_person <= 13
    assert 0.10 <= counts["web.formFilledOut"] / 100_000 <= 0.20
    for name, original in ORIGINAL_EVENT_COUNTS.items():
        if name != "web.formFilledOut":
            assert abs(counts[name] / original - 1) < 0.25, name


def test_default_mode_keeps_every_parents_children():
    """With one person and many emails, every opened email comes from some sent one (append, not assign)."""
    params = make_params(people=2_000)
    params_cmle = make_params(people=2_000, mode="cmle")
    rng = np.random.default_rng(0)
    ones = np.ones(2_000)
    default_opened = np.bincount(simulate_chunk(ones, params, rng).code, minlength=13)
    cmle_opened = np.bincount(simulate_chunk(ones, params_cmle, rng).code, minlength=13)
    code = TYPE_NAMES.index("directMarketing.emailOpened")
    # default: 5 sent x 0.395 = ~1.98 per person; cmle: one sent's 2.0 survive (also ~1.98); the spread differs
    assert default_opened[code] / 2_000 == pytest.approx(1.98, rel=0.1)
    assert cmle_opened[code] / 2_000 == pytest.approx(1.98, rel=0.1)


def test_clipped_walk_matches_a_plain_loop():
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 30, size=200)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    delta = rng.choice([0.3, -0.2, 0.05, 0.6], size=int(lengths.sum()))
    got = clipped_walk(delta, starts, lengths, 0.001)
    expected = np.empty_like(delta)
    for start, length in zip(starts, lengths, strict=True):
        p = 0.001
        for i in range(start, start + length):
            p = min(max(p + delta[i], 0.0), 1.0)
            expected[i] = p
    np.testing.assert_allclose(got, expected)
    assert (got == 0).any() and (got == 1).any()  # both bounds were hit


def test_at_most_one_conversion_after_a_drawing_event():
    params = make_params(people=5_000)
    latents = draw_person_latents(params)
    events = pa.concat_tables(simulate_events(latents, params)).to_pandas()
    conversions = events[events["eventType"] == "web.formFilledOut"]
    assert conversions["ecid"].is_unique
    drawing = events[~events["eventType"].str.startswith(("directMarketing", "advertising", "web.formFilledOut"))]
    trigger = conversions.assign(timestamp=conversions["timestamp"] - pd.Timedelta(seconds=60))
    matched = trigger.merge(drawing, on=["ecid", "timestamp"])
    assert set(matched["ecid"]) == set(conversions["ecid"])


def test_same_parameters_give_identical_tables():
    params = make_params(people=4_000, people_per_chunk=1_500)
    first = [
        pa.concat_tables(make(draw_person_latents(params), params)) for make in (simulate_events, simulate_profiles)
    ]
    again = [
        pa.concat_tables(make(draw_person_latents(params), params)) for make in (simulate_events, simulate_profiles)
    ]
    assert all(a.equals(b) for a, b in zip(first, again, strict=True))
    events, profiles = first
    assert len(events.column("_id").unique()) == events.num_rows
    assert set(pc_unique(events, "ecid")) <= set(pc_unique(profiles, "ecid"))
    assert profiles.num_rows == 4_000 and profiles.column("ecid").null_count == 0
    other = pa.concat_tables(simulate_events(draw_person_latents(params.model_copy(update={"seed": 1})), params))
    assert not other.equals(events)


def pc_unique(table: pa.Table, column: str) -> list[str]:
    """Distinct values of a column."""
    return table.column(column).unique().to_pylist()


def test_default_profiles_correlate_with_engagement():
    params = make_params(people=20_000, people_per_chunk=20_000)
    latents = draw_person_latents(params)
    profiles = pa.concat_tables(simulate_profiles(latents, params)).to_pandas()
    tier_rank = profiles["loyalty_tier"].map({"member": 0, "silver": 1, "gold": 2, "platinum": 3, "diamond": 4})
    assert np.corrcoef(np.log(latents["engagement"]), tier_rank)[0, 1] > 0.3
    assert profiles["loyalty_tier"].value_counts(normalize=True)["member"] == pytest.approx(0.40, abs=0.03)


def test_truth_keys_match_profiles():
    params = make_params(people=1_000)
    latents = draw_person_latents(params)
    truth = record_simulation_truth(latents, params)
    profiles = pa.concat_tables(simulate_profiles(latents, params))
    assert truth["ecid"].tolist() == profiles.column("ecid").to_pylist()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"people": -5}, "people"),
        ({"weeks": 0}, "weeks"),
        ({"mode": "turbo"}, "mode"),
        ({"children": {"web.madeUp": ["advertising.clicks"]}}, "web.madeUp"),
    ],
)
def test_bad_parameters_are_clear_errors(override, field):
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        make_params(**override)


def test_kedro_run_in_the_test_environment(tmp_path, kedro_session):
    with kedro_session() as session:
        session.run(pipeline_names=["data_generation"])
    with kedro_session() as session:
        catalog = session.load_context().catalog
        events, profiles = catalog.load("experience_events@handle"), catalog.load("profiles@handle")
    assert profiles.row_count == 3_000
    assert 9 * 3_000 <= events.row_count <= 13 * 3_000
    assert (tmp_path / "data/platform.duckdb").exists()


def test_conversions_stay_with_their_person_in_tiny_chunks():
    """Conversion times may need more bits than event times: events must stay grouped by person."""
    params = make_params(people=3)
    for seed in range(300):
        events = simulate_chunk(np.full(3, 3.0), params, np.random.default_rng(seed))
        order = np.lexsort((events.time, events.person))
        np.testing.assert_array_equal(order, np.arange(len(events)))
