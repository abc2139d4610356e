"""Nodes of the scoring pipeline: score the scoring features in record batches; enrich profiles."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from aep_propensity.chunks import ChunkSequence
from aep_propensity.model import PropensityModel
from aep_propensity.platform import TableHandle, identifier
from aep_propensity.run_context import RunContext
from aep_propensity.sql import render_template


def score_batch(batch: pa.RecordBatch, model: PropensityModel, run: RunContext) -> pa.Table:
    """Scores of one batch: the probability of converting within the horizon and its decile, or, for
    people already converted, no score and ``converted`` true. Straight from Arrow: no pandas."""
    for name in ("ecid", "converted"):
        if name not in batch.schema.names:
            raise ValueError(f"scoring features have no {name!r} column")
    converted = batch.column("converted").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    scores = np.full(batch.num_rows, np.nan)
    deciles = np.zeros(batch.num_rows, dtype=np.int64)
    if (~converted).any():
        scores[~converted] = model.predict(batch.filter(pa.array(~converted)))
        deciles[~converted] = model.deciles(scores[~converted])
    return pa.table(
        {
            "ecid": batch.column("ecid").cast(pa.string()),
            "score": pa.array(scores, mask=converted),
            "decile": pa.array(deciles, mask=converted),
            "converted": pa.array(converted),
            "model_id": _repeated(model.model_id, batch.num_rows),
            "run_id": _repeated(run.run_id, batch.num_rows),
            "scored_at": pa.array(np.full(batch.num_rows, np.datetime64(run.started_at, "us")), pa.timestamp("us")),
        }
    )


def _repeated(value: str, rows: int) -> pa.DictionaryArray:
    """One string on every row, dictionary-encoded (stored once)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value]))


def score_profiles(
    scoring_data: Iterable[pa.RecordBatch], model: PropensityModel, run_context: RunContext
) -> ChunkSequence[pa.Table]:
    """One score row per profile for this run, as a lazy sequence of chunks (one batch when ingested)."""
    return ChunkSequence.mapped(lambda batch: score_batch(batch, model, run_context), scoring_data, "propensity_scores")


def select_scoring_export(scoring_features: TableHandle) -> TableHandle:
    """The scoring table to export for scoring (bulk reads go through exports, never the query path)."""
    missing = [name for name in ("ecid", "converted") if name not in scoring_features.columns]
    if missing:
        raise ValueError(f"table {scoring_features.name!r} has no column {missing[0]!r}")
    return scoring_features


def build_enriched_profiles(profiles: TableHandle, propensity_scores: TableHandle) -> str:
    """SQL for every profile with its latest run's score."""
    return render_template(
        "enriched_profiles.sql", profiles=identifier(profiles.name), scores=identifier(propensity_scores.name)
    )
