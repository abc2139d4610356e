"""Nodes of the evaluation pipeline: the oracle's AUC on the test rows, beside the models' AUCs.

The oracle (``aep_propensity.simulation.oracle``) is the simulator's true conversion probability for
each test person; its AUC is the best any model could reach on these rows. Synthetic data only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from aep_propensity.parameters import TimeDesign
from aep_propensity.platform import TableHandle, identifier, literal
from aep_propensity.simulation.oracle import oracle_probabilities
from aep_propensity.simulation.params import SimulationParams
from aep_propensity.sql import render_template

from .params import EvaluationParams

logger = logging.getLogger(__name__)


def select_oracle_history(events: TableHandle, time: TimeDesign) -> str:
    """SQL: every event strictly before the training cutoff (nothing stored after it can leak)."""
    return render_template("events_before.sql", events=identifier(events.name), before=literal(time.training_cutoff))


def estimate_oracle(
    history: pd.DataFrame,
    truth: pd.DataFrame,
    test_predictions: pd.DataFrame,
    simulation: SimulationParams,
    time: TimeDesign,
    params: EvaluationParams,
) -> pd.DataFrame:
    """Each test person's true probability of converting within the horizon, with its standard error.

    Empty when the data was generated in cmle mode, whose overwritten children make the truth
    depend on generation order rather than time (no oracle is defined for it).
    """
    if simulation.mode != "default":
        logger.warning("No oracle for %s-mode data: evaluation reports the models only", simulation.mode)
        return pd.DataFrame(
            {
                "ecid": pd.Series(dtype="string"),
                "probability": pd.Series(dtype=float),
                "standard_error": pd.Series(dtype=float),
            }
        )
    engagement = truth.set_index("ecid")["engagement"].reindex(test_predictions["ecid"])
    if engagement.isna().any():
        raise ValueError(f"{int(engagement.isna().sum())} test people have no simulation truth")
    return oracle_probabilities(
        history,
        engagement,
        simulation,
        time.training_cutoff,
        time.horizon,
        params.replicas,
        params.seed,
    )


def compare_with_oracle(
    oracle: pd.DataFrame, test_predictions: pd.DataFrame, params: EvaluationParams
) -> dict[str, Any]:
    """The oracle's AUC (with its Monte Carlo standard error) beside both models' AUCs on the same rows.

    The standard error comes from redrawing each oracle probability within its own standard error.
    """
    labels = test_predictions["label"].to_numpy()
    report: dict[str, Any] = {"rows": int(len(labels)), "positives": int(labels.sum())}
    for model in ("lightgbm", "baseline"):
        report[f"{model}_auc"] = float(roc_auc_score(labels, test_predictions[model]))
    if oracle.empty:
        return {**report, "oracle_auc": None, "reason": "no oracle for cmle-mode data"}
    merged = test_predictions[["ecid"]].merge(oracle, on="ecid", how="left", validate="one_to_one")
    probability, error = merged["probability"].to_numpy(), merged["standard_error"].to_numpy()
    rng = np.random.default_rng(params.seed)
    draws = [
        roc_auc_score(labels, probability + error * rng.standard_normal(len(labels))) for _ in range(params.auc_draws)
    ]
    oracle_auc = float(roc_auc_score(labels, probability))
    report.update(
        oracle_auc=oracle_auc,
        oracle_auc_standard_error=float(np.std(draws, ddof=1)),
        lightgbm_to_oracle=report["lightgbm_auc"] / oracle_auc,
        baseline_to_oracle=report["baseline_auc"] / oracle_auc,
        oracle_mean_probability=float(probability.mean()),
        observed_rate=float(labels.mean()),
    )
    logger.info(
        "Test AUC: oracle %.4f (MC s.e. %.4f), LightGBM %.4f (%.1f%% of the oracle), baseline %.4f",
        oracle_auc,
        report["oracle_auc_standard_error"],
        report["lightgbm_auc"],
        100 * report["lightgbm_to_oracle"],
        report["baseline_auc"],
    )
    return report
