"""The propensity model as trained and scored: the estimator plus everything needed to use it safely.

A :class:`PropensityModel` names what it was trained on (the export time of the training data),
the exact feature list and categorical levels, its parameters, and the decile cut-points taken
from validation scores, so that chunked and one-piece scoring give the same deciles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes


class FeatureMismatchError(ValueError):
    """The frame to score lacks a model feature or holds it with the wrong type."""


@dataclass
class PropensityModel:
    """A fitted classifier with its feature contract and decile cut-points."""

    model_id: str
    estimator: Any
    features: list[str]
    categories: dict[str, list[str]]
    decile_cuts: list[float]
    trained_on: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)

    def feature_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's feature columns of ``frame``, categoricals encoded with the training levels.

        A missing column, a non-numeric value in a numeric feature or a numeric categorical is a
        :class:`FeatureMismatchError` naming the column.
        """
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise FeatureMismatchError(f"model {self.model_id}: input has no feature column {missing[0]!r}")
        columns = {}
        for name in self.features:
            column = frame[name]
            if name in self.categories:
                if ptypes.is_numeric_dtype(column) and not ptypes.is_bool_dtype(column):
                    raise FeatureMismatchError(
                        f"model {self.model_id}: feature {name!r} must be text, got {column.dtype}"
                    )
                text = column.astype("string")
                known = text.where(text.isin(self.categories[name]))  # unseen levels score as missing
                columns[name] = pd.Categorical(known, categories=self.categories[name])
            elif ptypes.is_numeric_dtype(column) or ptypes.is_bool_dtype(column):
                columns[name] = column.astype("float64")
            else:
                raise FeatureMismatchError(
                    f"model {self.model_id}: feature {name!r} must be numeric, got {column.dtype}"
                )
        return pd.DataFrame(columns, index=frame.index)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The probability of converting within the horizon for each row of ``frame``."""
        return self.estimator.predict_proba(self.feature_frame(frame))[:, 1]

    def deciles(self, scores: np.ndarray) -> np.ndarray:
        """Decile 1 (lowest) to 10 (highest) of each score, from the stored cut-points."""
        return np.searchsorted(np.asarray(self.decile_cuts), scores, side="right") + 1


def decile_cuts(scores: np.ndarray) -> list[float]:
    """The nine cut-points splitting ``scores`` into ten equal groups."""
    return [float(q) for q in np.quantile(scores, np.linspace(0.1, 0.9, 9))]
