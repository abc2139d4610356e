"""The Platform port: what every dataset and pipeline uses to touch "the platform".

This package's top level is the port's public face: the core's types and SQL helpers, and
:func:`make_platform`, which builds a backend from the catalog's configuration. Backends
(:mod:`.local` on DuckDB or PostgreSQL, :mod:`.aep` on Adobe Experience Platform, :mod:`.spark` on
Apache Spark) are imported
only when a configuration asks for them.
"""

from __future__ import annotations

from .config import PlatformConfig, make_platform, parse_platform_config
from .core.destinations import make_destination
from .core.port import (
    ActivationRequest,
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    BatchRecord,
    Column,
    DatasetSpec,
    Delivery,
    Destination,
    ExportRecord,
    Field,
    ParquetMap,
    Platform,
    PlatformError,
    ProfileSource,
    SchemaMismatchError,
    TableHandle,
    check_name,
)
from .core.sql import Sql, identifier, literal, literal_list

__all__ = [
    "ActivationRequest",
    "AudienceDefinition",
    "AudienceJob",
    "AudienceRecord",
    "BatchRecord",
    "Column",
    "DatasetSpec",
    "Delivery",
    "Destination",
    "ExportRecord",
    "Field",
    "ParquetMap",
    "Platform",
    "PlatformConfig",
    "PlatformError",
    "ProfileSource",
    "SchemaMismatchError",
    "Sql",
    "TableHandle",
    "check_name",
    "identifier",
    "literal",
    "literal_list",
    "make_destination",
    "make_platform",
    "parse_platform_config",
]
