"""Validated parameters of the data_generation pipeline (conf/base/parameters_data_generation.yml).

The world it simulates is the simulation's (``aep_propensity.simulation.params.SimulationParams``, the
``simulation`` parameters, which evaluation's oracle reads too); these say how many people to generate
into it, from which seed, and how many to simulate and ingest at a time.
"""

from __future__ import annotations

from pydantic import Field

from aep_propensity.parameters import FrozenParams


class DataGenerationParams(FrozenParams):
    """The population size, the seed of every random stream, and the people per chunk (which bounds memory)."""

    people: int = Field(gt=0)
    seed: int = Field(ge=0)
    people_per_chunk: int = Field(gt=0)

    @property
    def chunks(self) -> int:
        """How many chunks of people the simulation is split into."""
        return -(-self.people // self.people_per_chunk)
