"""Generate synthetic customer profiles and experience events into the platform."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
