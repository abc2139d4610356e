"""Kedro datasets over the platform: tables, their exports, audiences and destinations."""

from .platform_audiences import PlatformAudienceDataset, PlatformDestinationDataset
from .platform_export import PlatformExportDataset
from .platform_table import PlatformTableDataset

__all__ = ["PlatformAudienceDataset", "PlatformDestinationDataset", "PlatformExportDataset", "PlatformTableDataset"]
