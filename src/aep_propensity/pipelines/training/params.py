"""Validated parameters of the training pipeline (conf/base/parameters_training.yml)."""

from __future__ import annotations

from pydantic import Field, model_validator

from aep_propensity.parameters import FrozenParams


class SplitParams(FrozenParams):
    """Shares of the rows held out for validation and test."""

    validation: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> SplitParams:
        if self.validation + self.test >= 0.9:
            raise ValueError("split: validation + test must leave at least 10% of the rows to train on")
        return self


class LightGBMParams(FrozenParams):
    """LightGBM settings; the rest of LightGBM's options keep their defaults."""

    n_estimators: int = Field(gt=0)
    early_stopping_rounds: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    num_leaves: int = Field(gt=1)
    min_child_samples: int = Field(gt=0)
    subsample: float = Field(gt=0, le=1)
    subsample_freq: int = Field(ge=0)
    colsample_bytree: float = Field(gt=0, le=1)
    reg_lambda: float = Field(ge=0)
    n_jobs: int = Field(1, gt=0)


class LogisticParams(FrozenParams):
    """The baseline's regularisation and iteration budget."""

    C: float = Field(gt=0)
    max_iter: int = Field(gt=0)


class SearchParams(FrozenParams):
    """An optional random search over LightGBM settings."""

    enabled: bool = False
    trials: int = Field(8, gt=0)
    space: dict[str, list[float | int]] = {}


class TrainingParams(FrozenParams):
    """Everything the training pipeline needs."""

    not_features: list[str]
    categorical: list[str]
    split: SplitParams
    lightgbm: LightGBMParams
    logistic: LogisticParams
    search: SearchParams = SearchParams()

    @model_validator(mode="after")
    def _check(self) -> TrainingParams:
        unknown = sorted(set(self.search.space) - set(LightGBMParams.model_fields))
        if unknown:
            raise ValueError(f"search.space: not LightGBM settings: {unknown}")
        return self
