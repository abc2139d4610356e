"""Validated parameters of the evaluation pipeline (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from pydantic import Field

from aep_propensity.parameters import FrozenParams


class EvaluationParams(FrozenParams):
    """The oracle's Monte Carlo replicas and seed, and the draws for its AUC's standard error."""

    replicas: int = Field(gt=1)
    seed: int = Field(ge=0)
    auc_draws: int = Field(200, gt=1)
