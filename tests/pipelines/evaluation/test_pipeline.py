"""The evaluation pipeline: the history before the cutoff, the oracle beside the models, none for cmle-mode data."""

from __future__ import annotations

import pandas as pd
import pytest

from aep_propensity.parameters import TimeDesign
from aep_propensity.pipelines.evaluation.nodes import compare_with_oracle, estimate_oracle, select_oracle_history
from aep_propensity.pipelines.evaluation.params import EvaluationParams
from aep_propensity.platform import TableHandle
from tests.simulation.helpers import WINDOW, simulation_params

TIME = TimeDesign(window=WINDOW)
PARAMS = EvaluationParams(replicas=200, seed=0, auc_draws=20)
PREDICTIONS = pd.DataFrame(
    {
        "ecid": ["a", "b", "c", "d"],
        "label": [0, 1, 0, 1],
        "lightgbm": [0.1, 0.7, 0.3, 0.4],
        "baseline": [0.2, 0.3, 0.4, 0.5],
    }
)
TRUTH = pd.DataFrame({"ecid": ["d", "c", "b", "a", "other"], "engagement": [2.0, 1.0, 3.0, 0.5, 1.0]})
NO_HISTORY = pd.DataFrame(
    {
        "ecid": pd.Series(dtype="string"),
        "eventType": pd.Series(dtype="string"),
        "timestamp": pd.Series(dtype="datetime64[us]"),
    }
)


def test_history_stops_at_the_training_cutoff():
    sql = select_oracle_history(TableHandle("experience_events", ("ecid", "eventType", "timestamp"), 1), TIME)
    assert f"'{TIME.training_cutoff.isoformat(sep=' ')}'" in sql


def test_oracle_beside_the_models():
    oracle = estimate_oracle(NO_HISTORY, TRUTH, PREDICTIONS, simulation_params(), TIME, PARAMS)
    assert oracle["ecid"].tolist() == ["a", "b", "c", "d"]
    assert oracle["probability"].between(0, 1).all()
    report = compare_with_oracle(oracle, PREDICTIONS, PARAMS)
    assert (report["rows"], report["positives"], report["lightgbm_auc"], report["baseline_auc"]) == (4, 2, 1.0, 0.75)
    assert 0 <= report["oracle_auc"] <= 1 and report["oracle_auc_standard_error"] >= 0


def test_no_oracle_for_cmle_mode_data():
    oracle = estimate_oracle(NO_HISTORY, TRUTH, PREDICTIONS, simulation_params(mode="cmle"), TIME, PARAMS)
    assert oracle.empty
    report = compare_with_oracle(oracle, PREDICTIONS, PARAMS)
    assert report["oracle_auc"] is None and report["lightgbm_auc"] == 1.0


def test_test_people_need_a_simulation_truth():
    with pytest.raises(ValueError, match="1 test people have no simulation truth"):
        estimate_oracle(NO_HISTORY, TRUTH[TRUTH["ecid"] != "c"], PREDICTIONS, simulation_params(), TIME, PARAMS)
