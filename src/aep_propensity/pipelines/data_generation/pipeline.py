"""The data_generation pipeline: synthetic profiles and experience events into the platform."""

from kedro.pipeline import Node, Pipeline

from .nodes import draw_person_latents, record_simulation_truth, simulate_events, simulate_profiles

PARAMS = ["params:simulation", "params:data_generation"]


def create_pipeline(**kwargs) -> Pipeline:
    """Latents first; profiles, events and the simulation truth all derive from them."""
    return Pipeline(
        [
            Node(draw_person_latents, PARAMS, "person_latents", name="draw_person_latents"),
            Node(
                simulate_profiles,
                ["person_latents", *PARAMS],
                "profiles@chunks",
                name="simulate_profiles",
            ),
            Node(
                simulate_events,
                ["person_latents", *PARAMS],
                "experience_events@chunks",
                name="simulate_events",
            ),
            Node(record_simulation_truth, "person_latents", "simulation_truth", name="record_simulation_truth"),
        ],
        tags=["data_generation"],
    )
