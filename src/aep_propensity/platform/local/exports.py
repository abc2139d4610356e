"""Dataset export on the local platform (AEP's dataset export to the Data Landing Zone role)."""

from __future__ import annotations

import uuid

import fsspec

from ..core.exports import PARQUET_COMPRESSIONS, finished_export, free_export_time, write_parquet_parts
from ..core.ledger import Ledger
from ..core.port import ExportRecord, check_name
from .engines import Engine


class LocalExports:
    """Tables written as Parquet parts in the Data Landing Zone layout, recorded in the ledger."""

    def __init__(self, engine: Engine, ledger: Ledger, rows_per_file: int) -> None:
        self.engine = engine
        self.ledger = ledger
        self.rows_per_file = rows_per_file

    def export(self, table: str, location: str, compression: str = "snappy") -> ExportRecord:
        """Write ``table`` as Parquet parts ``part-<n>.parquet`` at ``location/<table>/exportTime=YYYYmmddHHMMSS/``.

        The engine's own writer makes the parts where it has one (DuckDB, in parallel, to a local
        folder); otherwise the table is streamed through pyarrow. Either way the parts go to a
        staging folder that is moved into place when complete, so a reader never sees a partial
        export. No rows pass through pandas.
        """
        check_name(table)
        if compression not in PARQUET_COMPRESSIONS:
            raise ValueError(f"compression must be one of {sorted(PARQUET_COMPRESSIONS)}, not {compression!r}")
        fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
        export_time = free_export_time(fs, f"{root}/{table}")
        export_id = uuid.uuid4().hex
        staging = f"{root}/{table}/_staging-{export_id}"
        final = f"{root}/{table}/exportTime={export_time}"
        fs.makedirs(f"{root}/{table}", exist_ok=True)
        try:
            with self.engine.connect(read_only=True) as conn:
                if not self.engine.native_export(conn, table, fs, staging, self.rows_per_file, compression):
                    batches = self.engine.stream(conn, f'SELECT * FROM "{table}"', 131_072)
                    write_parquet_parts(batches, fs, staging, self.rows_per_file, compression)
            fs.mv(staging, final, recursive=True)
        except BaseException:
            if fs.exists(staging):
                fs.rm(staging, recursive=True)
            raise
        record = finished_export(fs, final, export_id, table, export_time)
        self.ledger.record_export(record)
        return record
