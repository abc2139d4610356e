"""Exports in the Data Landing Zone layout, shared by every backend and the emulator.

An export of a table is a folder ``<location>/<table>/exportTime=YYYYmmddHHMMSS/`` of Parquet parts
``part-<n>.parquet``; no two exports of a table share a folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .port import ExportRecord, utc_now

logger = logging.getLogger(__name__)

PARQUET_COMPRESSIONS = frozenset({"snappy", "zstd", "gzip", "uncompressed"})


def free_export_time(fs: fsspec.AbstractFileSystem, folder: str) -> str:
    """This second's ``exportTime`` under ``folder``, waiting for the next second if an export already took it."""
    while True:
        export_time = utc_now().strftime("%Y%m%d%H%M%S")
        if not fs.exists(f"{folder}/exportTime={export_time}"):
            return export_time
        time.sleep(0.2)


def write_parquet_parts(
    batches: Iterator[pa.RecordBatch], fs: fsspec.AbstractFileSystem, folder: str, rows_per_file: int, compression: str
) -> None:
    """Write a stream of record batches as ``part-<n>.parquet`` files of at most ``rows_per_file`` rows."""
    fs.makedirs(folder, exist_ok=True)
    writer, files, written = None, 0, 0
    try:
        for batch in batches:
            for start in range(0, batch.num_rows, rows_per_file):
                piece = batch.slice(start, rows_per_file)
                while piece.num_rows:
                    if writer is None or written >= rows_per_file:
                        if writer is not None:
                            writer.close()
                        writer = pq.ParquetWriter(
                            f"{folder}/part-{files}.parquet", piece.schema, filesystem=fs, compression=compression
                        )
                        files, written = files + 1, 0
                    take = piece.slice(0, rows_per_file - written)
                    writer.write_batch(take)
                    written += take.num_rows
                    piece = piece.slice(take.num_rows)
    finally:
        if writer is not None:
            writer.close()


def finished_export(
    fs: fsspec.AbstractFileSystem, folder: str, export_id: str, table: str, export_time: str
) -> ExportRecord:
    """The record of the export of ``table`` now complete in ``folder`` (its parts' rows and bytes), logged."""
    parts = sorted(fs.ls(folder, detail=False))
    rows = sum(pq.ParquetFile(path, filesystem=fs).metadata.num_rows for path in parts)
    size = sum(fs.size(path) for path in parts)
    record = ExportRecord(export_id, table, fs.unstrip_protocol(folder), export_time, rows, len(parts), size)
    logger.info(
        "Exported %s: %s rows in %d files (%s bytes) to %s", table, f"{rows:,}", len(parts), f"{size:,}", record.path
    )
    return record
