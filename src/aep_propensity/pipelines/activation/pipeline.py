"""The activation pipeline: reach analysis, audiences evaluated on the platform, delivered to destinations."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_activation_report,
    define_audiences,
    explore_score_histogram,
    plot_reach,
    predict_reach,
    reach_by_threshold,
    request_activation,
)

PARAMS = "params:activation"


def create_pipeline(**kwargs) -> Pipeline:
    """Histogram the scores, define and evaluate audiences, deliver them, report from the ledger."""
    return Pipeline(
        [
            Node(
                explore_score_histogram,
                ["enriched_profiles@handle", PARAMS],
                "score_histogram@sql",
                name="explore_score_histogram",
            ),
            Node(
                reach_by_threshold,
                ["score_histogram@pandas", PARAMS],
                "reach_by_threshold",
                name="analyse_reach_by_threshold",
            ),
            Node(predict_reach, ["score_histogram@pandas", PARAMS], "predicted_reach", name="predict_reach"),
            Node(plot_reach, ["score_histogram@pandas", PARAMS], "reach_plots", name="plot_reach"),
            Node(
                define_audiences,
                ["score_histogram@pandas", PARAMS],
                "audience_membership@definitions",
                name="define_audiences",
            ),
            Node(
                request_activation,
                ["audience_membership@jobs", PARAMS],
                "audience_files@request",
                name="activate_to_cloud_storage",
            ),
            Node(
                request_activation,
                ["audience_membership@jobs", PARAMS],
                "audience_webhook@request",
                name="activate_to_webhook",
            ),
            Node(
                build_activation_report,
                [
                    "audience_membership@jobs",
                    "predicted_reach",
                    "audience_files@deliveries",
                    "audience_webhook@deliveries",
                ],
                "activation_report",
                name="build_activation_report",
            ),
        ],
        tags=["activation"],
    )
