"""``PlatformTableDataset``: a table on the platform, as a Kedro dataset.

Saving runs work on the platform: chunks of rows are ingested as one batch; SQL text rendered
by a node is materialised by CTAS. Loading gives a light handle by default, or the rows through
the transcoded views ``name@pandas`` and ``name@arrow``. Nothing connects until ``load``, ``save``
or ``exists`` is called.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from kedro.io import AbstractDataset, DatasetError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aep_propensity.datasets.platform_mixin import PlatformMixin
from aep_propensity.platform import DatasetSpec, TableHandle, check_name

View = Literal["handle", "pandas", "arrow", "sql", "chunks"]
_LOADS = {"pandas": "pandas", "arrow": "arrow"}  # every other view loads a handle


class TableDeclaration(BaseModel):
    """How the catalog declares one platform table: its layer, and what saving it means.

    ``schema`` (``{identity, profile_enabled, columns: {name: type}}``) is needed to ingest rows;
    ``replace`` (default true) makes each batch replace the dataset's rows, false appends;
    ``materialize: view`` saves SQL as a view instead of a table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layer: str | None = None
    table_schema: dict[str, Any] | None = Field(None, alias="schema")
    replace: bool = True
    materialize: Literal["table", "view"] = "table"


class PlatformTableDataset(PlatformMixin, AbstractDataset[Any, TableHandle | pd.DataFrame | pa.Table]):
    """One view of a platform table.

    Every platform table is declared once, under ``_platform_tables`` in its layer's catalog file,
    and one dataset factory (conf/base/catalog_00_platform.yml) gives each of its views::

        "{table}@{view}":
          type: aep_propensity.datasets.PlatformTableDataset
          table: "{table}"
          view: "{view}"
          tables: ${_platform_tables}
          platform: ${globals:platform}
          credentials: platform

        _platform_tables:
          experience_events:
            layer: raw
            schema: {identity: ecid, profile_enabled: true, columns: {ecid: string, ...}}

    ``view`` names what a node gets on load: ``pandas`` or ``arrow`` give the rows; ``handle``,
    ``sql`` and ``chunks`` a light handle (name, columns, row count). Every view saves the same way:

    - SQL text (the canonical dialect): ``CREATE TABLE table AS <sql>``, replacing the table (atomically
      on the local backend), or with ``materialize: view`` a view that always reflects the tables it reads;
    - an iterable of Arrow tables or DataFrames, such as a ``ChunkSequence``, or one DataFrame:
      ingested as one batch, all or nothing, checked against the table's ``schema``.
    """

    def __init__(
        self,
        *,
        table: str,
        platform: dict[str, Any],
        tables: dict[str, Any],
        view: View = "handle",
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._table = check_name(table)
        if table not in tables:
            raise DatasetError(
                f"{table}@{view}: table {table!r} is not declared under _platform_tables in the catalog "
                f"(declared: {', '.join(sorted(tables))})"
            )
        try:
            declaration = TableDeclaration.model_validate(tables[table] or {})
        except ValidationError as exc:
            raise DatasetError(f"{table}: bad _platform_tables declaration: {exc}") from None
        if view not in View.__args__:
            raise DatasetError(f"{table}@{view}: the view must be one of {', '.join(View.__args__)}")
        self._configure_platform(table, platform, credentials)
        schema = declaration.table_schema
        self._spec = DatasetSpec.from_config(table, schema) if schema else None
        self._load_as = _LOADS.get(view, "handle")
        self._replace = declaration.replace
        self._materialize = declaration.materialize
        layer = {"kedro-viz": {"layer": declaration.layer}} if declaration.layer else {}
        self.metadata = {**layer, **(metadata or {})}

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
