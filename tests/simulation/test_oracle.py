"""The oracle: agreement with the real simulator, conditioning on the history, pending children, errors."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from aep_propensity.simulation.oracle import oracle_probabilities
from aep_propensity.simulation.params import CONVERSION_EVENT, SimulationParams
from aep_propensity.simulation.simulator import TYPE_CODE, TYPE_NAMES, Events, simulate_chunk
from tests.simulation.helpers import simulation_params

HORIZON = timedelta(days=14)


def history_frame(rows: list[tuple[str, str, datetime]]) -> pd.DataFrame:
    """A history table from (ecid, eventType, timestamp) rows."""
    return pd.DataFrame(
        {
            "ecid": pd.Series([r[0] for r in rows], dtype="string"),
            "eventType": pd.Series([r[1] for r in rows], dtype="string"),
            "timestamp": pd.Series([r[2] for r in rows], dtype="datetime64[us]"),
        }
    )


def simulated_history(events: Events, params: SimulationParams, cutoff: datetime) -> pd.DataFrame:
    """The simulated events strictly before the cutoff, as a history table (ecid = person index)."""
    before = events.time < (cutoff - params.window.start) // timedelta(microseconds=1)
    return pd.DataFrame(
        {
            "ecid": events.person[before],
            "eventType": np.array(TYPE_NAMES)[events.code[before]],
            "timestamp": np.datetime64(params.window.start, "us") + events.time[before].astype("timedelta64[us]"),
        }
    )


def converting(events: Events, params: SimulationParams, since: datetime, until: datetime) -> np.ndarray:
    """The people (indices) with a conversion in [since, until)."""
    us = timedelta(microseconds=1)
    lo, hi = (since - params.window.start) // us, (until - params.window.start) // us
    hit = (events.code == TYPE_CODE[CONVERSION_EVENT]) & (events.time >= lo) & (events.time < hi)
    return np.unique(events.person[hit])


def one_person(params: SimulationParams, rows: list[tuple[str, datetime]], cutoff: datetime) -> float:
    """The probability of one person with engagement 1 and the given (eventType, timestamp) history.

    Every call uses the same seed, so people with the same engagement and no pending children share
    their replicas' futures (common random numbers) and differ only in the propensity at the cutoff.
    """
    history = history_frame([("a", name, at) for name, at in rows])
    result = oracle_probabilities(history, pd.Series([1.0], index=["a"]), params, cutoff, HORIZON, 20_000, 7)
    return float(result["probability"].iloc[0])


@pytest.mark.parametrize("engagement", [0.5, 3.0])
def test_matches_the_simulator_from_the_window_start(engagement: float):
    params = simulation_params()
    people = 200_000 if engagement < 1 else 100_000
    events = simulate_chunk(np.full(people, engagement), params, np.random.default_rng(1))
    empirical = len(converting(events, params, params.window.start, params.window.start + HORIZON)) / people
    evaluated = pd.Series(engagement, index=[f"p{i}" for i in range(2_000)])
    oracle = oracle_probabilities(history_frame([]), evaluated, params, params.window.start, HORIZON, 200, 2)
    estimate = oracle["probability"].mean()
    error = np.sqrt(empirical * (1 - empirical) / people + (oracle["standard_error"] ** 2).mean() / len(evaluated))
    assert abs(estimate - empirical) < 4 * error
    assert list(oracle["ecid"]) == list(evaluated.index)


def test_higher_engagement_converts_more():
    params = simulation_params()
    evaluated = pd.Series([0.5, 3.0], index=["low", "high"])
    oracle = oracle_probabilities(history_frame([]), evaluated, params, params.window.start, HORIZON, 20_000, 3)
    low, high = oracle["probability"]
    assert high > low + 4 * oracle["standard_error"].max()


def test_matches_the_simulator_after_a_history():
    """Mid-window, the mean oracle probability of the unconverted people is their conversion rate.

    A one-day horizon makes the pending children of the last day's emails matter: without them the
    oracle would fall about nine standard errors short.
    """
    params = simulation_params()
    people, horizon = 100_000, timedelta(days=1)
    cutoff = params.window.start + timedelta(weeks=8)
    events = simulate_chunk(np.full(people, 2.0), params, np.random.default_rng(4))
    unconverted = np.setdiff1d(np.arange(people), converting(events, params, params.window.start, cutoff))
    outcome = np.isin(unconverted, converting(events, params, cutoff, cutoff + horizon))
    evaluated = pd.Series(2.0, index=unconverted)
    oracle = oracle_probabilities(simulated_history(events, params, cutoff), evaluated, params, cutoff, horizon, 20, 5)
    probability = oracle["probability"].to_numpy()
    spread = np.mean(probability * (1 - probability)) + np.mean(oracle["standard_error"] ** 2)
    assert abs(outcome.mean() - probability.mean()) < 4 * np.sqrt(spread / len(unconverted))


def test_conditions_on_the_propensity_at_the_cutoff():
    params = simulation_params()
    cutoff = params.window.start + timedelta(weeks=4)
    empty = one_person(params, [], cutoff)
    purchases = one_person(
        params, [("commerce.purchases", cutoff - timedelta(minutes=m)) for m in range(5, 30, 5)], cutoff
    )
    dismissed = one_person(params, [("decisioning.propositionDismiss", cutoff - timedelta(minutes=5))], cutoff)
    assert purchases > 3 * empty
    assert dismissed < empty


def test_pending_children_raise_the_probability():
    params = simulation_params()
    cutoff = params.window.start + timedelta(weeks=6)
    emails = [("directMarketing.emailSent", cutoff - timedelta(hours=1))] * 20
    old_emails = [("directMarketing.emailSent", cutoff - timedelta(days=30))] * 20
    recent, old = one_person(params, emails, cutoff), one_person(params, old_emails, cutoff)
    assert recent > old + 0.05


def test_same_seed_same_result():
    params = simulation_params()
    cutoff = params.window.start + timedelta(weeks=2)
    history = history_frame([("a", "directMarketing.emailSent", cutoff - timedelta(hours=3))])
    engagement = pd.Series([1.0, 2.0], index=["a", "b"])
    first = oracle_probabilities(history, engagement, params, cutoff, HORIZON, 500, 11)
    pd.testing.assert_frame_equal(first, oracle_probabilities(history, engagement, params, cutoff, HORIZON, 500, 11))
    assert not first.equals(oracle_probabilities(history, engagement, params, cutoff, HORIZON, 500, 12))


def test_cmle_mode_is_refused():
    params = simulation_params(mode="cmle")
    with pytest.raises(ValueError, match="default mode only"):
        oracle_probabilities(
            history_frame([]), pd.Series([1.0], index=["a"]), params, params.window.start, HORIZON, 10, 0
        )


def test_converted_people_are_refused():
    params = simulation_params()
    cutoff = params.window.start + timedelta(weeks=2)
    history = history_frame(
        [(ecid, CONVERSION_EVENT, cutoff - timedelta(days=1)) for ecid in ("a", "b", "other")]
        + [("c", "commerce.purchases", cutoff - timedelta(days=1))]
    )
    engagement = pd.Series(1.0, index=["a", "b", "c"])
    with pytest.raises(ValueError, match="2 of the evaluated people converted"):
        oracle_probabilities(history, engagement, params, cutoff, HORIZON, 10, 0)
