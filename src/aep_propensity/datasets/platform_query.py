"""``PlatformQueryDataset``: a read-only query handle on the platform, for notebooks.

Loading gives a :class:`PlatformQueries` whose ``query(sql)`` runs an interactive query through the
platform port: SQL in the canonical (DuckDB) dialect, transpiled for the engine, on a read-only
connection, and more than the interactive row limit (50,000 rows, as on Query Service) is an error.
Bulk reads go through exports. Nothing connects until ``query`` is called; saving is not supported.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from aep_propensity.datasets.platform_mixin import PlatformMixin
from aep_propensity.platform import Platform


class PlatformQueries:
    """Interactive, read-only queries on one platform (a connection per query)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def __repr__(self) -> str:
        return f"PlatformQueries({self._platform!r}, row_limit={self.row_limit:,})"

    @property
    def row_limit(self) -> int:
        """The most rows one query may return."""
        return self._platform.interactive_row_limit

    def query(self, sql: str) -> pd.DataFrame:
        """The rows of ``sql`` (canonical DuckDB dialect); more than ``row_limit`` rows is a ``PlatformError``."""
        return self._platform.query(sql)


class PlatformQueryDataset(PlatformMixin, AbstractDataset[Any, PlatformQueries]):
    """Live, read-only SQL on the platform.

    Example catalog entry::

        platform_queries:
          type: aep_propensity.datasets.PlatformQueryDataset
          platform: ${globals:platform}
          credentials: platform

    and in a notebook::

        queries = catalog.load("platform_queries")
        queries.query('SELECT "eventType", COUNT(*) AS events FROM experience_events GROUP BY 1')
    """

    def __init__(
        self,
        *,
        platform: dict[str, Any],
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._configure_platform("platform queries", platform, credentials)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"backend": self._platform_config.backend}

    def load(self) -> PlatformQueries:
        """A query handle on the platform (nothing connects until a query runs)."""
        return PlatformQueries(self._platform)

    def save(self, data: Any) -> None:
        """Not supported: the platform is written by the pipelines' datasets, never through queries."""
        raise DatasetError(
            "PlatformQueryDataset is read-only: write to the platform through PlatformTableDataset "
            "(CTAS or ingestion), not through interactive queries"
        )
