"""The data_generation pipeline: synthetic profiles and experience events into the platform."""

from kedro.pipeline import Node, Pipeline

from .nodes import draw_person_latents, record_simulation_truth, simulate_events, simulate_profiles


def create_pipeline(**kwargs) -> Pipeline:
    """Latents first; profiles, events and the simulation truth all derive from them."""
    return Pipeline(
        [
            Node(draw_person_latents, "params:data_generation", "person_latents", name="draw_person_latents"),
            Node(
                simulate_profiles,
                ["person_latents", "params:data_generation"],
                "profiles@chunks",
                name="simulate_profiles",
            ),
            Node(
                simulate_events,
                ["person_latents", "params:data_generation"],
                "experience_events@chunks",
                name="simulate_events",
            ),
            Node(
                record_simulation_truth,
                ["person_latents", "params:data_generation"],
                "simulation_truth",
                name="record_simulation_truth",
            ),
        ],
        tags=["data_generation"],
    )
