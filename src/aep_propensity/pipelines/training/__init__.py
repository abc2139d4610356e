"""Train the propensity model (LightGBM) and its logistic baseline on the exported training set."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
