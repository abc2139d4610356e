"""The ``local`` backend: the Platform port on an embedded DuckDB file or on PostgreSQL.

:class:`LocalPlatform` is a thin facade over one component per platform service (ingestion,
exports, segmentation, activation), all sharing one engine and the ledger in its database.
"""

from .duckdb_engine import DuckDBEngine
from .platform import LocalPlatform
from .postgres_engine import PostgresEngine

__all__ = ["DuckDBEngine", "LocalPlatform", "PostgresEngine"]
