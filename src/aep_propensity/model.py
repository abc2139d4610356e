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
import pyarrow as pa
import pyarrow.compute as pc

#: Threads LightGBM predicts with: one parallel loop per call, so two threads help on two cores
#: (training stays on one: its many parallel steps spin-waited badly on two shared vCPUs).
PREDICT_THREADS = 2


def _column_names(data: pd.DataFrame | pa.Table | pa.RecordBatch) -> list[str]:
    """The column names of a DataFrame or an Arrow table or batch."""
    return list(data.columns) if isinstance(data, pd.DataFrame) else data.schema.names


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

    def feature_matrix(self, data: pd.DataFrame | pa.Table | pa.RecordBatch) -> np.ndarray:
        """The model's features as a float matrix: numbers as they are, each categorical as the index of
        its training level (NaN when missing or unseen). The same encoding serves fitting and scoring.

        A missing column, a non-numeric numeric feature or a non-text categorical is a
        :class:`FeatureMismatchError` naming the column.
        """
        missing = [name for name in self.features if name not in _column_names(data)]
        if missing:
            raise FeatureMismatchError(f"model {self.model_id}: input has no feature column {missing[0]!r}")
        if isinstance(data, pd.DataFrame):
            data = pa.Table.from_pandas(data[self.features], preserve_index=False)
        columns = []
        for name in self.features:
            column = data.column(name)
            kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
            if name in self.categories:
                if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                    raise FeatureMismatchError(f"model {self.model_id}: feature {name!r} must be text, got {kind}")
                column = pc.index_in(column.cast(pa.string()), value_set=pa.array(self.categories[name]))
            elif not (
                pa.types.is_integer(kind)
                or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)
                or pa.types.is_null(kind)
            ):
                raise FeatureMismatchError(f"model {self.model_id}: feature {name!r} must be numeric, got {kind}")
            columns.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
        return np.column_stack(columns) if columns else np.empty((data.num_rows, 0))

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical features in the feature matrix."""
        return [index for index, name in enumerate(self.features) if name in self.categories]

    def predict(self, data: pd.DataFrame | pa.Table | pa.RecordBatch) -> np.ndarray:
        """The probability of converting within the horizon for each row of ``data``."""
        return self.estimator.booster_.predict(self.feature_matrix(data), num_threads=PREDICT_THREADS)

    def deciles(self, scores: np.ndarray) -> np.ndarray:
        """Decile 1 (lowest) to 10 (highest) of each score, from the stored cut-points."""
        return np.searchsorted(np.asarray(self.decile_cuts), scores, side="right") + 1


def decile_cuts(scores: np.ndarray) -> list[float]:
    """The nine cut-points splitting ``scores`` into ten equal groups."""
    return [float(q) for q in np.quantile(scores, np.linspace(0.1, 0.9, 9))]
