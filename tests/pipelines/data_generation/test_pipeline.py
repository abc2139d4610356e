"""The data_generation pipeline: determinism, the simulation truth, parameter validation, a Kedro run."""

from __future__ import annotations

from pathlib import Path

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
from aep_propensity.pipelines.data_generation.params import DataGenerationParams
from tests.simulation.helpers import simulation_params

PROJECT = Path(__file__).resolve().parents[3]
SIMULATION = simulation_params()


def make_params(**overrides) -> DataGenerationParams:
    """The base parameters file with ``overrides``."""
    raw = yaml.safe_load((PROJECT / "conf/base/parameters_data_generation.yml").read_text())["data_generation"]
    return DataGenerationParams(**{**raw, **overrides})


def generated_tables(params: DataGenerationParams) -> tuple[pa.Table, pa.Table]:
    """The events and profiles of the base world with ``params``, each as one table."""
    latents = draw_person_latents(SIMULATION, params)
    return (
        pa.concat_tables(simulate_events(latents, SIMULATION, params)),
        pa.concat_tables(simulate_profiles(latents, SIMULATION, params)),
    )


def test_same_parameters_give_identical_tables():
    params = make_params(people=4_000, people_per_chunk=1_500)
    first, again = generated_tables(params), generated_tables(params)
    assert all(a.equals(b) for a, b in zip(first, again, strict=True))
    events, profiles = first
    assert len(events.column("_id").unique()) == events.num_rows
    assert set(pc_unique(events, "ecid")) <= set(pc_unique(profiles, "ecid"))
    assert profiles.num_rows == 4_000 and profiles.column("ecid").null_count == 0
    other, _ = generated_tables(params.model_copy(update={"seed": 1}))
    assert not other.equals(events)


def pc_unique(table: pa.Table, column: str) -> list[str]:
    """Distinct values of a column."""
    return table.column(column).unique().to_pylist()


def test_truth_keys_match_profiles():
    params = make_params(people=1_000)
    latents = draw_person_latents(SIMULATION, params)
    truth = record_simulation_truth(latents)
    profiles = pa.concat_tables(simulate_profiles(latents, SIMULATION, params))
    assert truth["ecid"].tolist() == profiles.column("ecid").to_pylist()


@pytest.mark.parametrize(
    ("override", "field"), [({"people": -5}, "people"), ({"people_per_chunk": 0}, "people_per_chunk")]
)
def test_bad_parameters_are_clear_errors(override, field):
    with pytest.raises(ValidationError, match=field):
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
