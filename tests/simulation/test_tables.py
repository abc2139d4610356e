"""The simulated people as flat rows: conversions in the event rows, profiles in line with engagement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aep_propensity.simulation.simulator import draw_engagement, simulate_chunk
from aep_propensity.simulation.tables import events_table, profiles_table
from tests.simulation.helpers import simulation_params


def test_at_most_one_conversion_after_a_drawing_event():
    params, people = simulation_params(), 5_000
    rng = np.random.default_rng(2)
    chunk = simulate_chunk(draw_engagement(params, people, rng), params, rng)
    events = events_table(chunk, np.arange(people), params, seed=2).to_pandas()
    conversions = events[events["eventType"] == "web.formFilledOut"]
    assert conversions["ecid"].is_unique
    drawing = events[~events["eventType"].str.startswith(("directMarketing", "advertising", "web.formFilledOut"))]
    trigger = conversions.assign(timestamp=conversions["timestamp"] - pd.Timedelta(seconds=60))
    matched = trigger.merge(drawing, on=["ecid", "timestamp"])
    assert set(matched["ecid"]) == set(conversions["ecid"])


def test_default_profiles_correlate_with_engagement():
    params, people = simulation_params(), 20_000
    rng = np.random.default_rng(3)
    engagement = draw_engagement(params, people, rng)
    profiles = profiles_table(np.arange(people), engagement, params, rng).to_pandas()
    tier_rank = profiles["loyalty_tier"].map({"member": 0, "silver": 1, "gold": 2, "platinum": 3, "diamond": 4})
    assert np.corrcoef(np.log(engagement), tier_rank)[0, 1] > 0.3
    assert profiles["loyalty_tier"].value_counts(normalize=True)["member"] == pytest.approx(0.40, abs=0.03)
