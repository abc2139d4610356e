"""Exports in the Data Landing Zone layout, shared by every backend and the emulator.

An export of a table is a folder ``<location>/<table>/exportTime=YYYYmmddHHMMSS/`` of Parquet parts
``part-<n>.parquet``; no two exports of a table share a folder.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .port import ExportRecord, check_name, utc_now

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


@dataclass
class ExportTarget:
    """Where one export writes its parts (``staging`` on ``fs``), and, once it is in place, its ``record``."""

    fs: fsspec.AbstractFileSystem
    staging: str
    record: ExportRecord | None = None


@contextmanager
def staged_export(table: str, location: str, compression: str) -> Iterator[ExportTarget]:
    """One export of ``table`` under ``location``: the block writes its ``part-<n>.parquet`` files into the
    target's staging folder; at its end the folder is moved into place as
    ``<location>/<table>/exportTime=<a free second>/`` and the target gets its record (rows and bytes read
    from the parts, logged); on any error the staging folder is removed, so a reader never sees a partial
    export."""
    check_name(table)
    if compression not in PARQUET_COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(PARQUET_COMPRESSIONS)}, not {compression!r}")
    fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
    export_time = free_export_time(fs, f"{root}/{table}")
    export_id = uuid.uuid4().hex
    target = ExportTarget(fs, f"{root}/{table}/_staging-{export_id}")
    final = f"{root}/{table}/exportTime={export_time}"
    fs.makedirs(f"{root}/{table}", exist_ok=True)
    try:
        yield target
        fs.mv(target.staging, final, recursive=True)
    except BaseException:
        if fs.exists(target.staging):
            fs.rm(target.staging, recursive=True)
        raise
    target.record = _finished_export(fs, final, export_id, table, export_time)


def _finished_export(
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
