"""``PlatformExportDataset``: a table exported to cloud storage in the Data Landing Zone layout.

Saving a :class:`TableHandle` asks the platform to export that table (no rows pass through Python)
to ``<path>/<table>/exportTime=YYYYmmddHHMMSS/part-*.parquet``; ``path`` is any fsspec URL (a
relative local path is taken from the project root, as for Kedro's own datasets).
Loading reads the newest export: as one DataFrame recording which export in ``DataFrame.attrs``,
or (``load_as: batches``) as a lazy, re-iterable stream of Arrow record batches for bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

from aep_propensity.datasets.platform_mixin import PlatformMixin
from aep_propensity.platform import TableHandle, check_name

_EXPORT_FOLDER = "exportTime="


class ExportBatches:
    """The record batches of one export, read lazily each time the object is iterated."""

    def __init__(self, path: str, filesystem: fsspec.AbstractFileSystem, batch_rows: int) -> None:
        self.path, self._filesystem, self.batch_rows = path, filesystem, batch_rows

    def __repr__(self) -> str:
        return f"ExportBatches({self.path!r}, batch_rows={self.batch_rows})"

    @property
    def url(self) -> str:
        """The export's folder as a URL (with its protocol), for a backend that reads it itself."""
        return self._filesystem.unstrip_protocol(self.path)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        dataset = pads.dataset(self.path, filesystem=self._filesystem, format="parquet")
        yield from dataset.to_batches(batch_size=self.batch_rows)


class PlatformExportDataset(PlatformMixin, AbstractDataset[TableHandle, pd.DataFrame | ExportBatches]):
    """Exports of one platform table.

    Example catalog entry::

        training_data:
          type: aep_propensity.datasets.PlatformExportDataset
          table: training_features
          path: data/05_model_input/dlz-destination/egress   # or s3://bucket/egress, abfs://...
          platform: ${globals:platform}
          credentials: platform
          fs_args: {}                                              # passed to the fsspec filesystem
    """

    def __init__(
        self,
        *,
        table: str,
        path: str,
        platform: dict[str, Any],
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        load_as: Literal["pandas", "batches"] = "pandas",
        batch_rows: int = 100_000,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._table = check_name(table)
        self._location = path.rstrip("/")
        self._configure_platform(f"{table} export", platform, credentials)
        self._fs_args = dict(fs_args or {})
        if load_as not in ("pandas", "batches"):
            raise DatasetError(f"{table} export: load_as must be 'pandas' or 'batches', not {load_as!r}")
        self._load_as = load_as
        self._batch_rows = batch_rows
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"table": self._table, "path": self._location, "load_as": self._load_as}

    def _filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The filesystem and the folder holding this table's exports."""
        fs, root = fsspec.core.url_to_fs(self._location, **self._fs_args)
        return fs, f"{root}/{self._table}"

    def _newest_export(self) -> str | None:
        """The newest ``exportTime=`` folder, or None when there is no export yet."""
        fs, folder = self._filesystem()
        if not fs.exists(folder):
            return None
        exports = sorted(
            path for path in fs.ls(folder, detail=False) if path.rsplit("/", 1)[-1].startswith(_EXPORT_FOLDER)
        )
        return exports[-1] if exports else None

    def save(self, data: TableHandle) -> None:
        """Export the handle's table through the platform."""
        if not isinstance(data, TableHandle):
            raise DatasetError(f"{self._table} export: expected a TableHandle, got {type(data).__name__}")
        if data.name != self._table:
            raise DatasetError(f"export dataset of table {self._table!r} was given table {data.name!r}")
        self._platform.export(data.name, self._location)

    def load(self) -> pd.DataFrame | ExportBatches:
        """The newest export's rows (``attrs`` hold its ``export_time`` and ``export_path``) or batches."""
        newest = self._newest_export()
        if newest is None:
            raise DatasetError(f"no export of {self._table!r} under {self._location}; run the featurization first")
        fs, _ = self._filesystem()
        if self._load_as == "batches":
            return ExportBatches(newest, fs, self._batch_rows)
        frame = pq.read_table(newest, filesystem=fs).to_pandas()
        frame.attrs = {"export_time": newest.rsplit(_EXPORT_FOLDER, 1)[-1], "export_path": fs.unstrip_protocol(newest)}
        return frame

    def _exists(self) -> bool:
        return self._newest_export() is not None
