"""Create audiences from the scores, evaluate them on the platform and activate them to destinations."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
