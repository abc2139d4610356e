"""The featurization pipeline: EDA and features as SQL on the query service, and the training export."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_scoring_features,
    build_training_features,
    explore_correlation,
    explore_events_per_day,
    explore_funnel,
    explore_overview,
    explore_precedence,
    plot_correlation,
    plot_events_per_day,
    plot_funnel,
    plot_precedence,
    report_data_quality,
    select_training_export,
)

PARAMS = "params:featurization"
TIME_DESIGN = "params:time_design"


def create_pipeline(**kwargs) -> Pipeline:
    """Exploration, data quality, the two feature tables and the export of the training set."""
    exploration = Pipeline(
        [
            Node(
                explore_overview,
                ["experience_events@handle", "profiles@handle"],
                "eda_overview@sql",
                name="explore_overview",
            ),
            Node(explore_funnel, "experience_events@handle", "eda_funnel@sql", name="explore_funnel"),
            Node(
                explore_events_per_day,
                "experience_events@handle",
                "eda_events_per_day@sql",
                name="explore_events_per_day",
            ),
            Node(explore_precedence, "experience_events@handle", "eda_precedence@sql", name="explore_precedence"),
            Node(
                explore_correlation,
                ["experience_events@handle", PARAMS],
                "eda_correlation@sql",
                name="explore_correlation",
            ),
            Node(plot_funnel, "eda_funnel@pandas", "eda_funnel_plot", name="plot_funnel"),
            Node(
                plot_events_per_day, "eda_events_per_day@pandas", "eda_events_per_day_plot", name="plot_events_per_day"
            ),
            Node(plot_precedence, "eda_precedence@pandas", "eda_precedence_plot", name="plot_precedence"),
            Node(plot_correlation, "eda_correlation@pandas", "eda_correlation_plot", name="plot_correlation"),
            Node(
                report_data_quality,
                ["experience_events@handle", PARAMS, TIME_DESIGN],
                "data_quality@sql",
                name="report_data_quality",
            ),
        ],
        tags=["eda"],
    )
    features = Pipeline(
        [
            Node(
                build_training_features,
                ["experience_events@handle", "profiles@handle", PARAMS, TIME_DESIGN],
                "training_features@sql",
                name="build_training_features",
            ),
            Node(
                build_scoring_features,
                ["experience_events@handle", "profiles@handle", PARAMS, TIME_DESIGN],
                "scoring_features@sql",
                name="build_scoring_features",
            ),
            Node(select_training_export, "training_features@handle", "training_data", name="export_training_data"),
        ],
        tags=["features"],
    )
    return Pipeline([exploration, features], tags=["featurization"])
