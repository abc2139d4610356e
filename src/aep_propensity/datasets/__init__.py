"""Kedro datasets over the platform: tables and their exports."""

from .platform_export import PlatformExportDataset
from .platform_table import PlatformTableDataset

__all__ = ["PlatformExportDataset", "PlatformTableDataset"]
