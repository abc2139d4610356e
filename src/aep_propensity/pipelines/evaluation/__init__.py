"""Evaluate the propensity models against the simulator's truth."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
