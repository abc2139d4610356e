"""Explore the events and build features with SQL on the query service; export the training set."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
