"""Classification metrics of a propensity model: ranking, probability quality and targeting value."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def top_decile(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(lift, capture) of the top 10% of scores: their conversion rate over the base rate, and the
    share of all conversions they hold. Ties at the boundary are broken by row order (stable sort)."""
    labels = np.asarray(labels, dtype=float)
    top = np.argsort(-np.asarray(scores), kind="stable")[: max(1, int(round(0.1 * len(labels))))]
    base_rate = labels.mean()
    lift = labels[top].mean() / base_rate if base_rate > 0 else float("nan")
    capture = labels[top].sum() / labels.sum() if labels.sum() > 0 else float("nan")
    return float(lift), float(capture)


def calibration_table(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """A reliability table: rows grouped into ``bins`` equal-count bins of score, with mean score,
    observed conversion rate and size of each."""
    order = np.argsort(np.asarray(scores), kind="stable")
    table = []
    for index, rows in enumerate(np.array_split(order, bins)):
        if len(rows):
            table.append(
                {
                    "bin": index + 1,
                    "mean_score": float(np.mean(scores[rows])),
                    "observed_rate": float(np.mean(labels[rows])),
                    "rows": int(len(rows)),
                }
            )
    return table


def cumulative_gain(labels: np.ndarray, scores: np.ndarray, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """(share of people targeted, share of conversions captured) when targeting by descending score."""
    ordered = np.asarray(labels, dtype=float)[np.argsort(-np.asarray(scores), kind="stable")]
    captured = np.r_[0.0, np.cumsum(ordered)] / max(ordered.sum(), 1.0)
    targeted = np.linspace(0, 1, len(captured))
    grid = np.linspace(0, 1, points)
    return grid, np.interp(grid, targeted, captured)


def classification_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC AUC, PR AUC, log loss, Brier score, top-decile lift and capture, and the calibration table."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    lift, capture = top_decile(labels, scores)
    return {
        "rows": int(len(labels)),
        "positives": int(labels.sum()),
        "base_rate": float(labels.mean()),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "log_loss": float(log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(labels, scores)),
        "top_decile_lift": lift,
        "top_decile_capture": capture,
        "calibration": calibration_table(labels, scores),
    }
