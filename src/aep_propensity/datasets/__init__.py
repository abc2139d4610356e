"""Kedro datasets over the platform: tables, their exports, audiences and destinations, and live queries."""

from .platform_audiences import PlatformAudienceDataset, PlatformDestinationDataset
from .platform_export import PlatformExportDataset
from .platform_query import PlatformQueryDataset
from .platform_table import PlatformTableDataset

__all__ = [
    "PlatformAudienceDataset",
    "PlatformDestinationDataset",
    "PlatformExportDataset",
    "PlatformQueryDataset",
    "PlatformTableDataset",
]
