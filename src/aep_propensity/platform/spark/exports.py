"""Dataset export on the spark backend: Spark's own Parquet writer into the Data Landing Zone layout."""

from __future__ import annotations

import uuid

import fsspec
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..core.exports import PARQUET_COMPRESSIONS, finished_export, free_export_time
from ..core.ledger import Ledger
from ..core.port import ExportRecord, check_name
from .tables import SparkTables


class SparkExports:
    """Tables written by Spark as ``part-<n>.parquet`` files under ``<location>/<table>/exportTime=.../``."""

    def __init__(self, tables: SparkTables, ledger: Ledger, rows_per_file: int) -> None:
        self.tables = tables
        self.ledger = ledger
        self.rows_per_file = rows_per_file

    def export(self, table: str, location: str, compression: str = "snappy") -> ExportRecord:
        """Write ``table`` with Spark's Parquet writer (its executors write the parts, at most
        ``rows_per_file`` rows each) into a staging folder, name the parts ``part-<n>.parquet``, drop
        Spark's marker files, and move the folder into place, so a reader never sees a partial export.
        Timestamps are written as naive UTC (TIMESTAMP_NTZ), as the other backends write them."""
        check_name(table)
        if compression not in PARQUET_COMPRESSIONS:
            raise ValueError(f"compression must be one of {sorted(PARQUET_COMPRESSIONS)}, not {compression!r}")
        fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
        export_time = free_export_time(fs, f"{root}/{table}")
        export_id = uuid.uuid4().hex
        staging = f"{root}/{table}/_staging-{export_id}"
        final = f"{root}/{table}/exportTime={export_time}"
        frame = self.tables.sql(f'SELECT * FROM "{table}"')
        frame = frame.select(
            *(
                F.col(f"`{field.name}`").cast(T.TimestampNTZType()).alias(field.name)
                if isinstance(field.dataType, T.TimestampType)
                else F.col(f"`{field.name}`")
                for field in frame.schema.fields
            )
        )
        try:
            (
                frame.write.option("maxRecordsPerFile", self.rows_per_file)
                .option("compression", compression)
                .parquet(fs.unstrip_protocol(staging))
            )
            written = sorted(path for path in fs.ls(staging, detail=False) if path.endswith(".parquet"))
            for index, path in enumerate(written):
                fs.mv(path, f"{staging}/part-{index}.parquet")
            for path in fs.ls(staging, detail=False):
                if not path.rsplit("/", 1)[-1].startswith("part-") or not path.endswith(".parquet"):
                    fs.rm(path)
            fs.mv(staging, final, recursive=True)
        except BaseException:
            if fs.exists(staging):
                fs.rm(staging, recursive=True)
            raise
        record = finished_export(fs, final, export_id, table, export_time)
        self.ledger.record_export(record)
        return record
