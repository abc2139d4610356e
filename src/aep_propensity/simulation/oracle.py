"""The simulator's true conversion probability after a cutoff, by Monte Carlo re-simulation.

For each person, the oracle estimates P(a ``web.formFilledOut`` lands in [cutoff, cutoff + horizon) |
engagement, the events before the cutoff) under the default-mode dynamics of ``simulator.py``. The
history fixes two things, and everything else is independent of it:

- **The propensity at the cutoff**: the clipped walk (``clipped_walk``) over the history's events
  in (time, type name) order, from ``propensity.initial``. All of the history's draws failed (the
  person has not converted), and draws are independent, so the future draws only need this value.
- **Pending children**: a parent occurrence at time t draws Poisson(rate_K x weeks) children of
  each child type K at t + Exp(delay_K). Those landing at or after the cutoff are not in the history.
  By Poisson thinning their number is Poisson(rate_K x weeks x exp(-(cutoff - t) / delay_K)),
  independent of the observed children, and by memorylessness each lands at cutoff + Exp(delay_K).
  The pending children of a person's parent occurrences are summed per child type into one Poisson
  mean. Children with a zero delay land with their parent, so they are never pending.

Each replica then re-simulates the future: base events of each base type in the part of
[cutoff, cutoff + horizon) inside the window [start, start + weeks), Poisson(rate x weeks x engagement
x overlap / window length) at uniform times, plus the pending children; then the children of all of
these, parent types in ``params.children`` order (topological, as in the simulator). The propensity
walks on from its cutoff value through the future events in (time, type name) order, and a web,
commerce or decisioning event draws Bernoulli(propensity after the event). A replica converts when a
draw at time s succeeds with s + conversion_delay < cutoff + horizon, so events at or after
cutoff + horizon - conversion_delay are never generated: they cannot change the outcome.

The probability is the mean over replicas and its standard error the binomial sqrt(p (1 - p) / replicas).

Approximation: a person whose draw succeeded in the last conversion_delay seconds before the cutoff
has converted, but their ``web.formFilledOut`` lands at or after the cutoff, so the history cannot
show it; the oracle treats them as unconverted. A draw in such a short span is negligible.

Implementation: people are processed in blocks of about two million person-replicas (a unit is one
person in one replica), all units of a block at once with numpy; times are whole microseconds from the
cutoff, like the simulator's. A person's Poisson(mean) events in each of R replicas are drawn as
Poisson(R x mean) events spread uniformly over the replicas (the same distribution, with no draw per
unit). Children of pending children are made by the children pass like any other. Before the walk,
a unit's events after its last drawing event, and the units without one, are dropped: they cannot
convert. Each remaining unit's walk starts with a pseudo-event that sets its cutoff propensity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from .params import CONVERSION_EVENT, SimulationParams
from .simulator import (
    DRAWS_CONVERSION,
    TYPE_CODE,
    TYPE_NAMES,
    US_PER_HOUR,
    US_PER_SECOND,
    clipped_walk,
    propensity_deltas,
)

UNITS_PER_BLOCK = 2_000_000
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class _PersonState:
    """What the oracle needs per person (arrays aligned with the evaluated people)."""

    propensity: np.ndarray  # the propensity at the cutoff
    base_means: dict[str, np.ndarray]  # expected base events per type in the base-event span
    pending_means: dict[str, np.ndarray]  # expected pending children per child type

    def block(self, people: slice) -> _PersonState:
        """The state of a contiguous block of people."""
        return _PersonState(
            self.propensity[people],
            {name: mean[people] for name, mean in self.base_means.items()},
            {name: mean[people] for name, mean in self.pending_means.items()},
        )


@dataclass(frozen=True)
class _Future:
    """The timing of the future, in microseconds from the cutoff."""

    end: int  # events at or after this cannot lead to a conversion inside the horizon
    base_span: tuple[int, int]  # where base events fall: the horizon's overlap with the window

    @property
    def time_bits(self) -> int:
        """Bits of an event's time in the sort key (times run from -1, a unit's pseudo-event, to end - 1)."""
        return max(self.end, 0).bit_length()


def oracle_probabilities(
    history: pd.DataFrame,
    engagement: pd.Series,
    params: SimulationParams,
    cutoff: datetime,
    horizon: timedelta,
    replicas: int,
    seed: int,
) -> pd.DataFrame:
    """Each person's true probability of converting in [cutoff, cutoff + horizon), with its MC standard error.

    ``history`` holds (ecid, eventType, timestamp) rows strictly before the cutoff, possibly of other
    people too; ``engagement`` is indexed by the ecids to evaluate, none of whom may have converted
    before the cutoff. Returns ecid, probability and standard_error in ``engagement``'s order.
    """
    if params.mode != "default":
        raise ValueError(f"the oracle reproduces the default mode only, not mode {params.mode!r}")
    if replicas <= 0:
        raise ValueError("replicas must be positive")
    if not engagement.index.is_unique:
        raise ValueError("engagement's index must hold each ecid once")
    future = _future_timing(params, cutoff, horizon)
    state = _person_state(history, engagement, params, cutoff, future)
    rng = np.random.default_rng(seed)
    people = len(engagement)
    block_size = _block_people(future, replicas)
    probability = np.empty(people)
    for first in range(0, people, block_size):
        block = slice(first, min(first + block_size, people))
        converted = _simulate_block(state.block(block), params, future, replicas, rng)
        probability[block] = converted.reshape(-1, replicas).mean(axis=1)
    return pd.DataFrame(
        {
            "ecid": engagement.index.to_numpy(),
            "probability": probability,
            "standard_error": np.sqrt(probability * (1 - probability) / replicas),
        }
    )


def _future_timing(params: SimulationParams, cutoff: datetime, horizon: timedelta) -> _Future:
    """Where the future ends and where its base events fall, in microseconds from the cutoff."""
    end = horizon // _US - round(params.propensity.conversion_delay_seconds * US_PER_SECOND)
    window_start = (params.window.start - cutoff) // _US
    window_end = window_start + params.window.weeks * 7 * 24 * US_PER_HOUR
    return _Future(end, (max(0, window_start), min(end, window_end)))


def _block_people(future: _Future, replicas: int) -> int:
    """People per block: about UNITS_PER_BLOCK units, few enough for (unit, time) to pack into an int64."""
    units = min(UNITS_PER_BLOCK, 1 << (63 - future.time_bits))
    if replicas > units:
        raise ValueError(f"at most {units} replicas fit in a block with this horizon")
    return units // replicas


def _person_state(
    history: pd.DataFrame, engagement: pd.Series, params: SimulationParams, cutoff: datetime, future: _Future
) -> _PersonState:
    """The propensity at the cutoff and the expected future base events and pending children per person."""
    person, age, code = _history_events(history, engagement.index, cutoff)
    people = len(engagement)
    counts = np.bincount(person, minlength=people)
    ends = np.cumsum(counts)
    walk = clipped_walk(propensity_deltas(params)[code], ends - counts, counts, params.propensity.initial)
    propensity = np.full(people, params.propensity.initial)
    propensity[counts > 0] = walk[ends[counts > 0] - 1]
    lo, hi = future.base_span
    share = max(0, hi - lo) / (params.window.weeks * 7 * 24 * US_PER_HOUR)
    values = engagement.to_numpy(dtype=float)
    base = {name: rate * params.window.weeks * share * values for name, rate in params.active_rates.base.items()}
    return _PersonState(propensity, base, _pending_means(person, age, code, people, params))


def _history_events(
    history: pd.DataFrame, ecids: pd.Index, cutoff: datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The evaluated people's history: person index, age at the cutoff (µs) and type code, in walk order."""
    person = ecids.get_indexer(history["ecid"])
    ours = history[person >= 0]
    person = person[person >= 0].astype(np.int64)
    code = pd.Categorical(ours["eventType"], categories=TYPE_NAMES).codes.astype(np.int64)
    if (code < 0).any():
        unknown = sorted(set(ours["eventType"][code < 0].astype(str)))
        raise ValueError(f"history: unknown event types {unknown}")
    timestamps = pd.to_datetime(ours["timestamp"]).to_numpy(dtype="datetime64[us]")
    age = (np.datetime64(cutoff, "us") - timestamps).astype(np.int64)
    if (age <= 0).any():
        raise ValueError(f"history: {int((age <= 0).sum())} events of the evaluated people are not before the cutoff")
    converted = np.unique(person[code == TYPE_CODE[CONVERSION_EVENT]])
    if len(converted):
        raise ValueError(f"{len(converted)} of the evaluated people converted before the cutoff; filter them out")
    order = np.lexsort((code, -age, person))
    return person[order], age[order], code[order]


def _pending_means(
    person: np.ndarray, age: np.ndarray, code: np.ndarray, people: int, params: SimulationParams
) -> dict[str, np.ndarray]:
    """Per child type, each person's expected number of children of past parents landing after the cutoff."""
    rates = params.active_rates.children
    means: dict[str, np.ndarray] = {}
    for parent, kids in params.children.items():
        of_parent = code == TYPE_CODE[parent]
        for kid in kids:
            delay = params.delay_hours[kid] * US_PER_HOUR
            if delay == 0:
                continue
            weights = rates[kid] * params.window.weeks * np.exp(-age[of_parent] / delay)
            mean = np.bincount(person[of_parent], weights, minlength=people)
            means[kid] = means[kid] + mean if kid in means else mean
    return means


def _scatter(mean: np.ndarray, replicas: int, rng: np.random.Generator) -> np.ndarray:
    """The units of Poisson(mean) events per person in each replica (unit = person x replicas + replica)."""
    counts = rng.poisson(mean * replicas)
    person = np.repeat(np.arange(len(mean), dtype=np.int64), counts)
    return person * replicas + rng.integers(0, replicas, size=len(person))


def _delays(hours: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Exponential delays with a mean of ``hours``, in whole microseconds like the simulator's."""
    return np.rint(rng.exponential(hours * US_PER_HOUR, size=size)).astype(np.int64)


def _future_events(
    state: _PersonState, params: SimulationParams, future: _Future, replicas: int, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per type, the (unit, µs from the cutoff) of every future event before ``future.end``."""
    lo, hi = future.base_span
    events: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def add(name: str, unit: np.ndarray, time: np.ndarray) -> None:
        keep = time < future.end
        old_unit, old_time = events.get(name, (np.empty(0, np.int64), np.empty(0, np.int64)))
        events[name] = (np.r_[old_unit, unit[keep]], np.r_[old_time, time[keep]])

    for name, mean in state.base_means.items():
        unit = _scatter(mean, replicas, rng)
        add(name, unit, np.floor(rng.uniform(lo, hi, size=len(unit))).astype(np.int64))
    for kid, mean in state.pending_means.items():
        unit = _scatter(mean, replicas, rng)
        add(kid, unit, _delays(params.delay_hours[kid], len(unit), rng))
    for parent, kids in params.children.items():
        parent_unit, parent_time = events.get(parent, (np.empty(0, np.int64), np.empty(0, np.int64)))
        for kid in kids:
            counts = rng.poisson(params.active_rates.children[kid] * params.window.weeks, size=len(parent_unit))
            delays = _delays(params.delay_hours[kid], int(counts.sum()), rng)
            add(kid, np.repeat(parent_unit, counts), np.repeat(parent_time, counts) + delays)
    return events


def _until_last_draw(
    events: dict[str, tuple[np.ndarray, np.ndarray]], units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The events that can matter, as (unit, time, code) in type-code order, and the units having any.

    Only a drawing event can convert, so a unit's events after its last drawing event are dropped,
    and so are the units without one.
    """
    last = np.full(units, -1)
    for name, (unit, time) in events.items():
        if DRAWS_CONVERSION[TYPE_CODE[name]]:
            np.maximum.at(last, unit, time)
    names = sorted(events, key=TYPE_CODE.__getitem__)
    keep = {name: events[name][1] <= last[events[name][0]] for name in names}
    unit = np.concatenate([np.empty(0, np.int64), *(events[name][0][keep[name]] for name in names)])
    time = np.concatenate([np.empty(0, np.int64), *(events[name][1][keep[name]] for name in names)])
    code = np.concatenate([np.empty(0, np.int64), *(np.full(keep[name].sum(), TYPE_CODE[name]) for name in names)])
    return unit, time, code, np.flatnonzero(last >= 0)


def _simulate_block(
    state: _PersonState, params: SimulationParams, future: _Future, replicas: int, rng: np.random.Generator
) -> np.ndarray:
    """Whether each unit of a block converts inside the horizon (person-major: unit = person x replicas + replica).

    Each unit starts with a pseudo-event at time -1 whose delta, from a zero propensity, sets its
    cutoff propensity, so ``clipped_walk`` (which starts every walk from one value) walks on from there.
    Events are sorted by one (unit, time) key, stably, so that ties keep the type-code order.
    """
    units = len(state.propensity) * replicas
    unit, time, code, starting = _until_last_draw(_future_events(state, params, future, replicas, rng), units)
    unit = np.r_[starting, unit]
    time = np.r_[np.full(len(starting), -1), time]
    code = np.r_[np.zeros(len(starting), np.int64), code]
    order = np.argsort((unit << future.time_bits) | (time + 1), kind="stable")
    unit, code = unit[order], code[order]
    counts = np.bincount(unit, minlength=units)[starting]
    starts = np.cumsum(counts) - counts  # each starting unit's pseudo-event
    delta = propensity_deltas(params)[code]
    delta[starts] = np.repeat(state.propensity, replicas)[starting]
    draws = DRAWS_CONVERSION[code]
    draws[starts] = False
    propensity = clipped_walk(delta, starts, counts, 0.0)
    drawing = np.flatnonzero(draws)
    success = drawing[rng.random(len(drawing)) < propensity[drawing]]
    converted = np.zeros(units, bool)
    converted[unit[success]] = True
    return converted
