"""Optional experiment tracking: off by default, and with ``--env mlflow`` the run, its parameters, the model
metrics and the propensity model land in the local MLflow store under the data root."""

from __future__ import annotations

import json
import pickle

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from aep_propensity.hooks import mlflow_configured, tracked_metrics
from tests.conftest import MLFLOW_INSTALL, require_module
from tests.project_copy import PROJECT, copy_project, output_tail, run_shell

TRAINING_RUN = "kedro run --env mlflow --pipelines data_generation,featurization,training"


def config_loader(env: str) -> OmegaConfigLoader:
    """The project's configuration loader for ``env``, as settings.py sets it up."""
    return OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local", env=env)


def test_tracking_is_on_only_in_the_mlflow_environment():
    assert mlflow_configured(config_loader("mlflow"))
    for env in ("local", "test", "cmle", "postgres"):
        assert not mlflow_configured(config_loader(env)), env


def test_tracked_metrics_are_the_numeric_test_metrics():
    report = {
        "model_id": "m1",
        "parameters": {"num_leaves": 15},
        "test": {
            "lightgbm": {"roc_auc": 0.8, "rows": 10, "calibration": [{"rows": 5}], "flag": True, "nan": float("nan")},
            "baseline": {"roc_auc": 0.7},
        },
    }
    assert tracked_metrics(report) == {
        "test.lightgbm.roc_auc": 0.8,
        "test.lightgbm.rows": 10.0,
        "test.baseline.roc_auc": 0.7,
    }


def test_a_tracked_training_run_lands_in_the_local_store(tmp_path):
    require_module("kedro_mlflow", MLFLOW_INSTALL)
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (the optional extra)

    project = copy_project(tmp_path / "project")
    result = run_shell(TRAINING_RUN, project)
    assert result.returncode == 0, output_tail(result)

    data = project / "data"
    client = MlflowClient(f"sqlite:///{data / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aep_propensity")
    assert experiment.artifact_location == (data / "mlruns").as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert set(run.info.run_name.split("+")) == {"data_generation", "featurization", "training"}

    training = yaml.safe_load((PROJECT / "conf/base/parameters_training.yml").read_text())["training"]
    assert run.data.params["training.lightgbm.learning_rate"] == str(training["lightgbm"]["learning_rate"])
    assert run.data.params["training.split.seed"] == str(training["split"]["seed"])
    assert run.data.params["data_generation.people"] == "3000"

    (metrics_file,) = (data / "08_reporting/model_metrics.json").glob("*/model_metrics.json")
    report = json.loads(metrics_file.read_text())
    assert run.data.metrics == pytest.approx(tracked_metrics(report))
    assert run.data.metrics["test.lightgbm.roc_auc"] == report["test"]["lightgbm"]["roc_auc"]

    logged = client.download_artifacts(run.info.run_id, "model/propensity_model.pkl", str(tmp_path))
    with open(logged, "rb") as file:
        assert pickle.load(file).model_id == report["model_id"]

    # The same project without --env mlflow: the plugin is installed, yet nothing is tracked.
    untracked = run_shell("kedro run --pipeline training", project)
    assert untracked.returncode == 0, output_tail(untracked)
    assert len(client.search_runs([experiment.experiment_id])) == 1
