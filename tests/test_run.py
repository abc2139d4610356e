"""The whole default pipeline through a KedroSession, in the test environment, on a temporary data root."""

from __future__ import annotations

import json


def test_default_pipeline_runs_end_to_end(tmp_path, kedro_session):
    with kedro_session() as session:
        session.run()
    with kedro_session() as session:
        catalog = session.load_context().catalog
        enriched = catalog.load("enriched_profiles@handle")
        scores = catalog.load("propensity_scores@handle")
        model = catalog.load("propensity_model")
    assert enriched.row_count == scores.row_count == 3_000
    metrics_files = list((tmp_path / "data/08_reporting/model_metrics.json").glob("*/model_metrics.json"))
    metrics = json.loads(metrics_files[0].read_text())
    assert metrics["model_id"] == model.model_id
    assert metrics["test"]["lightgbm"]["roc_auc"] > 0.5
    assert (tmp_path / "data/08_reporting/model/roc.png").exists()
