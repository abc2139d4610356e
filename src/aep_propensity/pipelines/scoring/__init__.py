"""Score every profile with the propensity model and ingest the scores to enrich profiles."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
