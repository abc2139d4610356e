"""Kedro datasets over the platform: tables, exports and (later) audiences."""

from .platform_table import PlatformTableDataset

__all__ = ["PlatformTableDataset"]
