"""The simulated world of the tests: the base parameters over a fixed 10-week window."""

from __future__ import annotations

from pathlib import Path

import yaml

from aep_propensity.simulation.params import SimulationParams

PROJECT = Path(__file__).resolve().parents[2]
WINDOW = {"start": "2026-08-03T00:00:00", "weeks": 10}


def simulation_params(**overrides) -> SimulationParams:
    """conf/base/parameters_simulation.yml over ``WINDOW`` (the globals it refers to), with ``overrides``."""
    raw = yaml.safe_load((PROJECT / "conf/base/parameters_simulation.yml").read_text())["simulation"]
    return SimulationParams(**{**raw, "window": WINDOW, **overrides})
