"""The training pipeline: the exported training set in; the model, its metrics and plots out."""

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate_models, plot_model_report, predict_test, split_training_data, train_baseline, train_lightgbm

PARAMS = "params:training"


def create_pipeline(**kwargs) -> Pipeline:
    """Split, fit both models, score the test rows, evaluate and plot."""
    return Pipeline(
        [
            Node(
                split_training_data,
                ["training_data", PARAMS],
                ["train_rows", "validation_rows", "test_rows", "training_source"],
                name="split_training_data",
            ),
            Node(
                train_lightgbm,
                ["train_rows", "validation_rows", "training_source", PARAMS],
                "propensity_model",
                name="train_lightgbm",
            ),
            Node(train_baseline, ["train_rows", PARAMS], "baseline_model", name="train_baseline"),
            Node(
                predict_test,
                ["propensity_model", "baseline_model", "test_rows", PARAMS],
                "test_predictions",
                name="predict_test",
            ),
            Node(evaluate_models, ["test_predictions", "propensity_model"], "model_metrics", name="evaluate_models"),
            Node(plot_model_report, ["test_predictions", "propensity_model"], "model_plots", name="plot_model_report"),
        ],
        tags=["training"],
    )
