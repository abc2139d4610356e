"""Dataset export on the local platform (AEP's dataset export to the Data Landing Zone role)."""

from __future__ import annotations

from ..core.exports import staged_export, write_parquet_parts
from ..core.ledger import Ledger
from ..core.port import ExportRecord
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
        with staged_export(table, location, compression) as target:
            with self.engine.connect(read_only=True) as conn:
                if not self.engine.native_export(
                    conn, table, target.fs, target.staging, self.rows_per_file, compression
                ):
                    batches = self.engine.stream(conn, f'SELECT * FROM "{table}"', 131_072)
                    write_parquet_parts(batches, target.fs, target.staging, self.rows_per_file, compression)
        self.ledger.record_export(target.record)
        return target.record
