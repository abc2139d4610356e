"""``PlatformTableDataset``: a table on the platform, as a Kedro dataset.

Saving runs work on the platform: chunks of rows are ingested as one batch; SQL text rendered
by a node is materialised by CTAS. Loading gives a light handle by default, or the rows through
transcoding (``name@pandas``). Nothing connects until ``load``, ``save`` or ``exists`` is called.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from kedro.io import AbstractDataset, DatasetError

from aep_propensity.datasets.platform_mixin import PlatformMixin
from aep_propensity.platform import DatasetSpec, TableHandle, check_name

LoadAs = Literal["handle", "pandas", "arrow"]


class PlatformTableDataset(PlatformMixin, AbstractDataset[Any, TableHandle | pd.DataFrame | pa.Table]):
    """A platform table.

    Example catalog entry::

        experience_events@handle:
          type: aep_propensity.datasets.PlatformTableDataset
          table: experience_events
          platform: ${globals:platform}
          credentials: platform
          schema: {identity: ecid, profile_enabled: true, columns: {ecid: string, ...}}

    ``save`` accepts:

    - SQL text (the canonical dialect): ``CREATE TABLE table AS <sql>``, replacing the table atomically,
      or with ``materialize: view`` a view that always reflects the tables it reads;
    - an iterable of Arrow tables or DataFrames, such as a ``ChunkSequence``, or one DataFrame:
      ingested as one batch, all or nothing, checked against ``schema``. ``replace`` (default
      true) makes each batch replace the dataset's rows; false appends.
    """

    def __init__(
        self,
        *,
        table: str,
        platform: dict[str, Any],
        credentials: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
        load_as: LoadAs = "handle",
        replace: bool = True,
        materialize: Literal["table", "view"] = "table",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._table = check_name(table)
        self._configure_platform(table, platform, credentials)
        self._spec = DatasetSpec.from_config(table, schema) if schema else None
        if load_as not in ("handle", "pandas", "arrow"):
            raise DatasetError(f"{table}: load_as must be 'handle', 'pandas' or 'arrow', not {load_as!r}")
        self._load_as = load_as
        self._replace = replace
        if materialize not in ("table", "view"):
            raise DatasetError(f"{table}: materialize must be 'table' or 'view', not {materialize!r}")
        self._materialize = materialize
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "table": self._table,
            "backend": self._platform_config.backend,
            "load_as": self._load_as,
            "replace": self._replace,
        }

    def load(self) -> TableHandle | pd.DataFrame | pa.Table:
        """The table's handle, or its rows as a DataFrame or Arrow table."""
        platform = self._platform
        if self._load_as == "handle":
            return platform.handle(self._table)
        handle = platform.handle(self._table)
        batches = list(platform.read_batches(f'SELECT * FROM "{handle.name}"'))
        table = pa.Table.from_batches(batches) if batches else None
        if table is None:
            return pd.DataFrame(columns=list(handle.columns)) if self._load_as == "pandas" else pa.table({})
        return table.to_pandas() if self._load_as == "pandas" else table

    def save(self, data: str | pd.DataFrame | Iterable[pa.Table | pd.DataFrame]) -> None:
        """Materialise SQL text by CTAS, or ingest chunks of rows as one batch."""
        if isinstance(data, str):
            if self._materialize == "view":
                self._platform.create_view(self._table, data)
            else:
                self._platform.create_table_as(self._table, data)
            return
        if self._spec is None:
            raise DatasetError(f"{self._table}: saving rows needs a 'schema' in the catalog entry")
        chunks = [data] if isinstance(data, pd.DataFrame | pa.Table) else data
        self._platform.ingest(self._spec, chunks, replace=self._replace)

    def _exists(self) -> bool:
        return self._platform.exists(self._table)

    def preview(self, nrows: int = 5) -> dict[str, Any]:
        """The first rows for kedro-viz, through a read-only interactive query."""
        frame = self._platform.query(f'SELECT * FROM "{self._table}" LIMIT {int(nrows)}')
        return frame.astype(str).to_dict(orient="split")
