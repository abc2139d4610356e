"""Nodes of the data_generation pipeline: pure functions from parameters to latents and chunk sequences.

Random streams are seeded per (seed, purpose, chunk), so the same parameters give identical
tables, ids included, whatever is run before or after.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from aep_propensity.chunks import ChunkSequence
from aep_propensity.simulation.ids import ecids
from aep_propensity.simulation.params import SimulationParams
from aep_propensity.simulation.simulator import draw_engagement, simulate_chunk
from aep_propensity.simulation.tables import events_table, profiles_table

from .params import DataGenerationParams

_LATENTS, _EVENTS, _PROFILES = 0, 1, 2


def _rng(params: DataGenerationParams, purpose: int, chunk: int = 0) -> np.random.Generator:
    """The random stream of one purpose (latents, events, profiles) and chunk."""
    return np.random.default_rng(np.random.SeedSequence([params.seed, purpose, chunk]))


def draw_person_latents(simulation: SimulationParams, params: DataGenerationParams) -> pd.DataFrame:
    """Per-person draws shared by the profile and event simulators: index and engagement."""
    engagement = draw_engagement(simulation, params.people, _rng(params, _LATENTS))
    return pd.DataFrame({"person_index": np.arange(params.people, dtype=np.int64), "engagement": engagement})


def _chunk_of(person_latents: pd.DataFrame, params: DataGenerationParams, index: int) -> pd.DataFrame:
    """The latents of chunk ``index``."""
    first = index * params.people_per_chunk
    return person_latents.iloc[first : first + params.people_per_chunk]


def simulate_events(
    person_latents: pd.DataFrame, simulation: SimulationParams, params: DataGenerationParams
) -> ChunkSequence[pa.Table]:
    """Experience events of every person, as a lazy sequence of Arrow chunks (one batch when saved)."""

    def make(index: int) -> pa.Table:
        latents = _chunk_of(person_latents, params, index)
        events = simulate_chunk(latents["engagement"].to_numpy(), simulation, _rng(params, _EVENTS, index))
        return events_table(events, latents["person_index"].to_numpy(), simulation, params.seed)

    return ChunkSequence.indexed(make, params.chunks, "experience_events")


def simulate_profiles(
    person_latents: pd.DataFrame, simulation: SimulationParams, params: DataGenerationParams
) -> ChunkSequence[pa.Table]:
    """Profile records of every person, as a lazy sequence of Arrow chunks (one batch when saved)."""

    def make(index: int) -> pa.Table:
        latents = _chunk_of(person_latents, params, index)
        engagement, rng = latents["engagement"].to_numpy(), _rng(params, _PROFILES, index)
        return profiles_table(latents["person_index"].to_numpy(), engagement, simulation, rng)

    return ChunkSequence.indexed(make, params.chunks, "profiles")


def record_simulation_truth(person_latents: pd.DataFrame) -> pd.DataFrame:
    """What evaluation needs to know per person beyond the data: the simulator's latent parameters.

    Never a model input: it lives in its own dataset, read only by the evaluation pipeline.
    """
    truth = pd.DataFrame(
        {
            "ecid": pd.Series(ecids(person_latents["person_index"].to_numpy()), dtype="string"),
            "person_index": person_latents["person_index"].to_numpy(),
            "engagement": person_latents["engagement"].to_numpy(),
        }
    )
    return truth
