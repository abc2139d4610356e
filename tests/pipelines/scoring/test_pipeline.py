"""Scoring: chunked equals one piece, converted people get no score, runs are atomic and kept as history."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aep_propensity.chunks import ChunkSequence
from aep_propensity.pipelines.scoring import nodes
from aep_propensity.pipelines.training import nodes as training
from aep_propensity.platform import Column, DatasetSpec, PlatformError
from aep_propensity.run_context import RunContext
from benchmarks.common import catalog_spec
from tests.pipelines.training.test_pipeline import PARAMS, toy_training_data

SCORES = catalog_spec("propensity_scores")
PROFILES = DatasetSpec("profiles", (Column("ecid", "string"), Column("gender", "string")), identity="ecid")
RUN = RunContext("run-1", datetime(2026, 10, 12, 8, 0))


@pytest.fixture(scope="module")
def model():
    train, validation, _, source = training.split_training_data(toy_training_data(), PARAMS)
    return training.train_lightgbm(train, validation, source, PARAMS)


def scoring_frame(rows: int = 1_000) -> pd.DataFrame:
    """Scoring features: the toy features, every fifth person already converted."""
    frame = toy_training_data(rows, seed=5).drop(columns=["label"])
    frame["converted"] = np.arange(rows) % 5 == 0
    return frame


def test_chunked_scoring_equals_one_piece(model):
    table = pa.Table.from_pandas(scoring_frame(), preserve_index=False)
    whole = nodes.score_batch(table.to_batches()[0], model, RUN)
    chunked = pa.concat_tables(nodes.score_profiles(table.to_batches(max_chunksize=97), model, RUN))
    assert chunked.equals(whole)


def test_converted_people_are_marked_not_scored(model):
    scored = nodes.score_batch(pa.RecordBatch.from_pandas(scoring_frame(), preserve_index=False), model, RUN)
    frame = scored.to_pandas()
    converted = frame["converted"]
    assert converted.sum() == 200
    assert frame.loc[converted, ["score", "decile"]].isna().all().all()
    assert frame.loc[~converted, "score"].between(0, 1).all()
    assert set(frame.loc[~converted, "decile"]) <= set(range(1, 11))
    assert (frame["run_id"] == "run-1").all() and (frame["model_id"] == model.model_id).all()
    assert (frame["scored_at"] == pd.Timestamp("2026-10-12 08:00")).all()


def test_deciles_follow_the_models_cut_points(model):
    cuts = np.array(model.decile_cuts)
    assert model.deciles(cuts).tolist() == list(range(2, 11))
    assert model.deciles(np.array([cuts[0] - 1e-9, 1.0])).tolist() == [1, 10]


def test_scoring_needs_the_converted_flag(model):
    batch = pa.RecordBatch.from_pandas(scoring_frame().drop(columns=["converted"]), preserve_index=False)
    with pytest.raises(ValueError, match="no 'converted' column"):
        nodes.score_batch(batch, model, RUN)


def ingest_run(platform, model, run: RunContext, frame: pd.DataFrame) -> None:
    """Score and ingest one run, then (re)define enriched_profiles."""
    batches = pa.Table.from_pandas(frame, preserve_index=False).to_batches(max_chunksize=300)
    platform.ingest(SCORES, nodes.score_profiles(batches, model, run))
    sql = nodes.build_enriched_profiles(platform.handle("profiles"), platform.handle("propensity_scores"))
    platform.create_view("enriched_profiles", sql)


def test_runs_are_history_and_enriched_profiles_show_the_latest(platform, model):
    frame = scoring_frame()
    platform.ingest(PROFILES, [pd.DataFrame({"ecid": frame["ecid"], "gender": "female"})], replace=True)
    ingest_run(platform, model, RUN, frame)
    later = RunContext("run-2", datetime(2026, 10, 13, 8, 0))
    ingest_run(platform, model, later, frame.assign(converted=False))
    runs = platform.query('SELECT run_id, count(*) AS n FROM "propensity_scores" GROUP BY run_id ORDER BY run_id')
    assert runs.to_dict("list") == {"run_id": ["run-1", "run-2"], "n": [1_000, 1_000]}
    enriched = platform.query(
        'SELECT run_id, count(*) AS n, count(propensity) AS scored FROM "enriched_profiles" GROUP BY run_id'
    )
    assert enriched.to_dict("list") == {"run_id": ["run-2"], "n": [1_000], "scored": [1_000]}
    assert [b.status for b in platform.batches("propensity_scores")] == ["success", "success"]


def test_a_failed_run_changes_nothing_visible(platform, model):
    frame = scoring_frame()
    platform.ingest(PROFILES, [pd.DataFrame({"ecid": frame["ecid"], "gender": "female"})], replace=True)
    ingest_run(platform, model, RUN, frame)
    before = platform.query('SELECT * FROM "enriched_profiles" ORDER BY ecid')

    def breaks_half_way(batch: pa.RecordBatch) -> pa.Table:
        if batch.num_rows < 300:
            raise PlatformError("the model server went away")
        return nodes.score_batch(batch, model, RunContext("run-broken", datetime(2026, 10, 14)))

    batches = pa.Table.from_pandas(frame, preserve_index=False).to_batches(max_chunksize=300)
    with pytest.raises(PlatformError, match="went away"):
        platform.ingest(SCORES, ChunkSequence.mapped(breaks_half_way, batches, "broken"))
    pd.testing.assert_frame_equal(platform.query('SELECT * FROM "enriched_profiles" ORDER BY ecid'), before)
    assert platform.query('SELECT count(DISTINCT run_id) AS runs FROM "propensity_scores"')["runs"][0] == 1
    assert [b.status for b in platform.batches("propensity_scores")] == ["failed", "success"]
