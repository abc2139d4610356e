"""The scoring pipeline: score every profile, ingest the scores, enrich the profiles."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_enriched_profiles, score_profiles, select_scoring_export


def create_pipeline(**kwargs) -> Pipeline:
    """Export the scoring features, score them in batches, ingest one batch per run, enrich."""
    return Pipeline(
        [
            Node(select_scoring_export, "scoring_features@handle", "scoring_data@export", name="export_scoring_data"),
            Node(
                score_profiles,
                ["scoring_data@batches", "propensity_model", "run_context"],
                "propensity_scores@chunks",
                name="score_profiles",
            ),
            Node(
                build_enriched_profiles,
                ["profiles@handle", "propensity_scores@handle"],
                "enriched_profiles@sql",
                name="build_enriched_profiles",
            ),
        ],
        tags=["scoring"],
    )
