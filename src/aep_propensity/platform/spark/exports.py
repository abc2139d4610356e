"""Dataset export on the spark backend: Spark's own Parquet writer into the Data Landing Zone layout."""

from __future__ import annotations

from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..core.exports import staged_export
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
        frame = self.tables.sql(f'SELECT * FROM "{check_name(table)}"')
        frame = frame.select(
            *(
                F.col(f"`{field.name}`").cast(T.TimestampNTZType()).alias(field.name)
                if isinstance(field.dataType, T.TimestampType)
                else F.col(f"`{field.name}`")
                for field in frame.schema.fields
            )
        )
        with staged_export(table, location, compression) as target:
            fs, staging = target.fs, target.staging
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
        self.ledger.record_export(target.record)
        return target.record
