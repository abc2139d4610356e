"""Training: metrics with known answers, the split, the models and the packaged PropensityModel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from aep_propensity.model import FeatureMismatchError
from aep_propensity.pipelines.training import nodes
from aep_propensity.pipelines.training.metrics import (
    calibration_table,
    classification_metrics,
    cumulative_gain,
    top_decile,
)
from aep_propensity.pipelines.training.params import TrainingParams

PROJECT = Path(__file__).resolve().parents[3]
PARAMS = TrainingParams(**yaml.safe_load((PROJECT / "conf/base/parameters_training.yml").read_text())["training"])


def test_metrics_on_a_toy_case():
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    metrics = classification_metrics(labels, scores)
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert metrics["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert metrics["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    assert (metrics["rows"], metrics["positives"], metrics["base_rate"]) == (4, 2, 0.5)


def test_top_decile_lift_and_capture():
    labels = np.array([1, 1] + [1, 1, 1] + [0] * 15)
    scores = np.linspace(1, 0, 20)
    assert top_decile(labels, scores) == pytest.approx((1.0 / 0.25, 2 / 5))


def test_calibration_and_gain():
    scores = np.repeat([0.1, 0.9], 50)
    labels = np.r_[np.zeros(45), np.ones(5), np.zeros(5), np.ones(45)]
    table = calibration_table(labels, scores, bins=2)
    got = [(row["mean_score"], row["observed_rate"], row["rows"]) for row in table]
    assert got == [pytest.approx((0.1, 0.1, 50)), pytest.approx((0.9, 0.9, 50))]
    targeted, captured = cumulative_gain(labels, scores, points=3)
    assert targeted.tolist() == [0.0, 0.5, 1.0]
    assert captured.tolist() == pytest.approx([0.0, 0.9, 1.0])


def toy_training_data(rows: int = 4_000, seed: int = 0) -> pd.DataFrame:
    """A learnable table: conversion depends on two features and a category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "ecid": [f"{i:06d}" for i in range(rows)],
            "n_page_views_56d": rng.poisson(2, rows),
            "days_since_page_views": rng.uniform(0, 56, rows),
            "loyalty_tier": rng.choice(["member", "gold", "diamond"], rows),
            "gender": rng.choice(["female", "male"], rows),
            "state": rng.choice(["CA", "NY"], rows),
        }
    )
    logit = (
        -3
        + 0.6 * frame["n_page_views_56d"]
        - 0.03 * frame["days_since_page_views"]
        + (frame["loyalty_tier"] == "diamond") * 1.0
    )
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame.attrs = {"export_time": "20260101000000", "export_path": "memory://x"}
    return frame


@pytest.fixture(scope="module")
def trained():
    train, validation, test, source = nodes.split_training_data(toy_training_data(), PARAMS)
    model = nodes.train_lightgbm(train, validation, source, PARAMS)
    baseline = nodes.train_baseline(train, PARAMS)
    return train, validation, test, source, model, baseline


def test_split_is_stratified_and_complete(trained):
    train, validation, test, source, *_ = trained
    assert len(train) + len(validation) + len(test) == 4_000
    assert len(test) == pytest.approx(800, abs=2) and len(validation) == pytest.approx(800, abs=2)
    rates = [part["label"].mean() for part in (train, validation, test)]
    assert max(rates) - min(rates) < 0.01
    assert not set(train["ecid"]) & set(test["ecid"])
    assert source == {
        "export_time": "20260101000000",
        "export_path": "memory://x",
        "rows": 4_000,
        "positives": int(toy_training_data()["label"].sum()),
    }


def test_models_learn_and_the_model_names_its_data(trained):
    *_, test, source, model, baseline = trained
    predictions = nodes.predict_test(model, baseline, test, PARAMS)
    metrics = nodes.evaluate_models(predictions, model)
    assert metrics["test"]["lightgbm"]["roc_auc"] > 0.75 and metrics["test"]["baseline"]["roc_auc"] > 0.75
    assert model.trained_on["export_time"] == "20260101000000" and model.model_id.startswith("lgbm-20260101000000-")
    assert model.features == ["n_page_views_56d", "days_since_page_views", "loyalty_tier", "gender", "state"]
    assert len(model.decile_cuts) == 9 and model.decile_cuts == sorted(model.decile_cuts)
    figures = nodes.plot_model_report(predictions, model)
    assert sorted(figures) == [
        "calibration.png",
        "feature_importance.png",
        "gain.png",
        "precision_recall.png",
        "roc.png",
    ]


def test_training_is_deterministic(trained):
    train, validation, _, source, model, _ = trained
    again = nodes.train_lightgbm(train, validation, source, PARAMS)
    assert again.model_id == model.model_id
    np.testing.assert_array_equal(again.predict(validation), model.predict(validation))


def test_search_picks_settings_from_the_space(trained):
    train, validation, _, source, _, _ = trained
    params = PARAMS.model_copy(update={"search": PARAMS.search.model_copy(update={"enabled": True, "trials": 2})})
    model = nodes.train_lightgbm(train, validation, source, params)
    assert model.parameters["num_leaves"] in PARAMS.search.space["num_leaves"]


def test_feature_contract_errors_name_the_column(trained):
    *_, test, _, model, _ = trained
    with pytest.raises(FeatureMismatchError, match="no feature column 'days_since_page_views'"):
        model.predict(test.drop(columns=["days_since_page_views"]))
    with pytest.raises(FeatureMismatchError, match="feature 'n_page_views_56d' must be numeric"):
        model.predict(test.assign(n_page_views_56d="many"))
    with pytest.raises(FeatureMismatchError, match="feature 'loyalty_tier' must be text"):
        model.predict(test.assign(loyalty_tier=3))


def test_unseen_category_scores_like_a_missing_one(trained):
    *_, test, _, model, _ = trained
    unseen = model.predict(test.head(50).assign(state="ZZ"))
    missing = model.predict(test.head(50).assign(state=None))
    np.testing.assert_allclose(unseen, missing)
