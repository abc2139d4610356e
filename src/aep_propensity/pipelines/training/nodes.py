"""Nodes of the training pipeline: split, fit LightGBM and a logistic baseline, evaluate, package, plot."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve, roc_curve
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from aep_propensity.model import PREDICT_THREADS, PropensityModel, decile_cuts

from .metrics import classification_metrics, cumulative_gain
from .params import TrainingParams

logger = logging.getLogger(__name__)


def feature_columns(frame: pd.DataFrame, params: TrainingParams) -> list[str]:
    """Every column of the training data except the identity, label and row context."""
    return [name for name in frame.columns if name not in params.not_features]


def split_training_data(
    training_data: pd.DataFrame, params: TrainingParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Stratified, seeded train / validation / test split, rows first ordered by ecid.

    Also returns where the data came from (the export's time and path, row and positive counts).
    """
    if "label" not in training_data.columns:
        raise ValueError("training data has no 'label' column")
    frame = training_data.sort_values("ecid", kind="stable", ignore_index=True)
    holdout = params.split.validation + params.split.test
    train, rest = train_test_split(frame, test_size=holdout, stratify=frame["label"], random_state=params.split.seed)
    validation, test = train_test_split(
        rest, test_size=params.split.test / holdout, stratify=rest["label"], random_state=params.split.seed
    )
    source = {**training_data.attrs, "rows": int(len(frame)), "positives": int(frame["label"].sum())}
    logger.info(
        "Split %s rows (%s positives) into %d / %d / %d",
        f"{len(frame):,}",
        f"{source['positives']:,}",
        len(train),
        len(validation),
        len(test),
    )
    return (*(part.sort_values("ecid", kind="stable", ignore_index=True) for part in (train, validation, test)), source)


def _categories(train: pd.DataFrame, params: TrainingParams) -> dict[str, list[str]]:
    """The levels of each categorical feature present, as seen in training."""
    return {
        name: sorted(train[name].dropna().astype(str).unique()) for name in params.categorical if name in train.columns
    }


def _lightgbm(settings: dict[str, Any], seed: int) -> lgb.LGBMClassifier:
    """A deterministic LightGBM classifier."""
    options = {key: value for key, value in settings.items() if key != "early_stopping_rounds"}
    return lgb.LGBMClassifier(**options, deterministic=True, force_row_wise=True, random_state=seed, verbose=-1)


def _fit_lightgbm(
    settings: dict[str, Any],
    seed: int,
    shell: PropensityModel,
    train_x: np.ndarray,
    train_y: pd.Series,
    valid_x: np.ndarray,
    valid_y: pd.Series,
) -> lgb.LGBMClassifier:
    """Fit on the model's feature matrices with early stopping on the validation log loss (steadier than
    AUC); AUC is recorded too."""
    model = _lightgbm(settings, seed)
    model.fit(
        train_x,
        train_y,
        feature_name=shell.features,
        categorical_feature=shell.categorical_indices,
        eval_X=(valid_x,),
        eval_y=(valid_y,),
        eval_metric="auc",
        callbacks=[lgb.early_stopping(settings["early_stopping_rounds"], first_metric_only=True, verbose=False)],
    )
    return model


def train_lightgbm(
    train: pd.DataFrame, validation: pd.DataFrame, source: dict[str, Any], params: TrainingParams
) -> PropensityModel:
    """Fit LightGBM (optionally after a small random search) and package it as a PropensityModel."""
    features = feature_columns(train, params)
    shell = PropensityModel("", None, features, _categories(train, params), [], source)
    train_x, valid_x = shell.feature_matrix(train), shell.feature_matrix(validation)
    settings = params.lightgbm.model_dump()
    if params.search.enabled:
        settings = _search(settings, params, shell, train_x, train["label"], valid_x, validation["label"])
    estimator = _fit_lightgbm(settings, params.split.seed, shell, train_x, train["label"], valid_x, validation["label"])
    validation_scores = estimator.booster_.predict(valid_x, num_threads=PREDICT_THREADS)  # as the model scores
    settings["n_estimators_used"] = int(estimator.best_iteration_ or settings["n_estimators"])
    fingerprint = json.dumps([source.get("export_time"), features, settings], sort_keys=True, default=str)
    model_id = f"lgbm-{source.get('export_time', 'unknown')}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:8]}"
    logger.info("Trained %s: %d trees on %d features", model_id, settings["n_estimators_used"], len(features))
    return PropensityModel(
        model_id, estimator, features, shell.categories, decile_cuts(validation_scores), source, settings
    )


def _search(
    settings: dict[str, Any],
    params: TrainingParams,
    shell: PropensityModel,
    train_x: np.ndarray,
    train_y: pd.Series,
    valid_x: np.ndarray,
    valid_y: pd.Series,
) -> dict[str, Any]:
    """A seeded random search of the configured space; the settings with the best validation AUC."""
    rng = np.random.default_rng(params.split.seed)
    best, best_auc = settings, -1.0
    for trial in range(params.search.trials):
        candidate = {
            **settings,
            **{key: values[rng.integers(len(values))] for key, values in params.search.space.items()},
        }
        model = _fit_lightgbm(candidate, params.split.seed, shell, train_x, train_y, valid_x, valid_y)
        auc = model.best_score_["valid_0"]["auc"]
        logger.info(
            "Search trial %d: validation AUC %.4f with %s",
            trial + 1,
            auc,
            {key: candidate[key] for key in params.search.space},
        )
        if auc > best_auc:
            best, best_auc = candidate, auc
    return best


def train_baseline(train: pd.DataFrame, params: TrainingParams) -> Pipeline:
    """The logistic-regression baseline: impute 0 and scale numbers, one-hot encode text."""
    features = feature_columns(train, params)
    categorical = [name for name in features if name in params.categorical]
    numeric = [name for name in features if name not in params.categorical]
    baseline = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        (
                            "numeric",
                            make_pipeline(SimpleImputer(strategy="constant", fill_value=0), StandardScaler()),
                            numeric,
                        ),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                    ]
                ),
            ),
            ("model", LogisticRegression(C=params.logistic.C, max_iter=params.logistic.max_iter)),
        ]
    )
    return baseline.fit(_baseline_input(train, params), train["label"])


def _baseline_input(frame: pd.DataFrame, params: TrainingParams) -> pd.DataFrame:
    """The baseline's input: the feature columns, text as plain Python objects for the encoder."""
    features = feature_columns(frame, params)
    return frame[features].astype({name: object for name in features if name in params.categorical})


def predict_test(
    model: PropensityModel, baseline: Pipeline, test: pd.DataFrame, params: TrainingParams
) -> pd.DataFrame:
    """The test rows' labels with both models' scores."""
    return pd.DataFrame(
        {
            "ecid": test["ecid"].to_numpy(),
            "label": test["label"].to_numpy(),
            "lightgbm": model.predict(test),
            "baseline": baseline.predict_proba(_baseline_input(test, params))[:, 1],
        }
    )


def evaluate_models(test_predictions: pd.DataFrame, model: PropensityModel) -> dict[str, Any]:
    """Both models' test metrics, and what the LightGBM model is and was trained on."""
    metrics = {
        name: classification_metrics(test_predictions["label"], test_predictions[name])
        for name in ("lightgbm", "baseline")
    }
    logger.info(
        "Test ROC AUC: LightGBM %.4f, baseline %.4f", metrics["lightgbm"]["roc_auc"], metrics["baseline"]["roc_auc"]
    )
    return {
        "model_id": model.model_id,
        "trained_on": model.trained_on,
        "features": model.features,
        "parameters": model.parameters,
        "test": metrics,
    }


def plot_model_report(test_predictions: pd.DataFrame, model: PropensityModel) -> dict[str, Figure]:
    """ROC, precision-recall, calibration, cumulative gain and feature importance figures, by file name."""
    labels = test_predictions["label"].to_numpy()
    models = {"LightGBM": test_predictions["lightgbm"].to_numpy(), "baseline": test_predictions["baseline"].to_numpy()}
    figures = {name: Figure(figsize=(5.5, 4.5)) for name in ("roc", "precision_recall", "calibration", "gain")}
    axes = {name: figure.subplots() for name, figure in figures.items()}
    for label, scores in models.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        axes["roc"].plot(fpr, tpr, label=label)
        precision, recall, _ = precision_recall_curve(labels, scores)
        axes["precision_recall"].plot(recall, precision, label=label)
        table = pd.DataFrame(classification_metrics(labels, scores)["calibration"])
        axes["calibration"].plot(table["mean_score"], table["observed_rate"], marker="o", label=label)
        targeted, captured = cumulative_gain(labels, scores)
        axes["gain"].plot(targeted, captured, label=label)
    axes["roc"].plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axes["calibration"].plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axes["gain"].plot([0, 1], [0, 1], "k:", linewidth=0.8)
    titles = {
        "roc": ("false positive rate", "true positive rate", "ROC"),
        "precision_recall": ("recall", "precision", "Precision-recall"),
        "calibration": ("mean predicted probability", "observed conversion rate", "Calibration (test deciles)"),
        "gain": ("share of people targeted", "share of conversions captured", "Cumulative gain"),
    }
    for name, (xlabel, ylabel, title) in titles.items():
        axes[name].set(xlabel=xlabel, ylabel=ylabel, title=title)
        axes[name].legend()
        figures[name].tight_layout()
    importance = pd.Series(model.estimator.booster_.feature_importance("gain"), index=model.features)
    top = importance.sort_values().tail(20)
    figures["feature_importance"] = Figure(figsize=(6.5, 6))
    bars = figures["feature_importance"].subplots()
    bars.barh(top.index, top.to_numpy(), color="#3b6ea8")
    bars.set(xlabel="total gain", title="LightGBM feature importance (top 20)")
    figures["feature_importance"].tight_layout()
    return {f"{name}.png": figure for name, figure in figures.items()}
