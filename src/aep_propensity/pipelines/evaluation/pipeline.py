"""The evaluation pipeline: hold the model against the simulator's truth (synthetic data only)."""

from kedro.pipeline import Node, Pipeline

from .nodes import compare_with_oracle, estimate_oracle, select_oracle_history


def create_pipeline(**kwargs) -> Pipeline:
    """History before the cutoff, the oracle's probabilities for the test rows, the comparison."""
    return Pipeline(
        [
            Node(
                select_oracle_history,
                ["experience_events@handle", "params:time_design"],
                "oracle_history@sql",
                name="select_oracle_history",
            ),
            Node(
                estimate_oracle,
                [
                    "oracle_history@pandas",
                    "simulation_truth",
                    "test_predictions",
                    "params:simulation",
                    "params:time_design",
                    "params:evaluation",
                ],
                "oracle_probabilities",
                name="estimate_oracle",
            ),
            Node(
                compare_with_oracle,
                ["oracle_probabilities", "test_predictions", "params:evaluation"],
                "evaluation_report",
                name="compare_with_oracle",
            ),
        ],
        tags=["evaluation"],
    )
