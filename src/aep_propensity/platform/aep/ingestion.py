"""Batch Ingestion (``/data/foundation/import``): one batch of nested XDM Parquet per ``ingest``, all or nothing.

The flat dataset ``X`` becomes the XDM dataset ``X_xdm`` (:mod:`.xdm` maps it; its schema from the
:class:`~.registry.SchemaRegistry`, the dataset from the :class:`~.catalog.Catalog`). Each chunk is
uploaded as one nested Parquet file of the batch (a file larger than ``upload_file_bytes``, 256 MB, as
AEP's large file in parts), then the batch is COMPLETEd and polled to ``success``; a failed upload is
ABORTed, so nothing becomes visible. A batch still not done at the poll timeout is ABORTed too, but AEP
takes ABORT only before a batch is loaded: when it refuses, the timeout error says that the batch may
still land and must then be REVERTed. The flat view ``X`` (``CREATE OR REPLACE VIEW X AS SELECT <xdm
path> AS <column> ...`` over the dataset's Query Service table) gives the pipelines their flat columns.

A replacing batch is created as AEP's replay of the dataset's current successful batches (``"replay":
{"predecessors": [...], "reason": "replace"}``), which lets the platform retire them when it succeeds.
Once it has, every predecessor still ``success``/``active`` (a platform that did not retire it) is
REVERTed; one already retired is left alone. A replacing batch that fails leaves its predecessors as
they were.

Adobe's reference: the Batch Ingestion API guide, with its large files and batch replay
(https://experienceleague.adobe.com/en/docs/experience-platform/ingestion/batch/api-overview).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.chunks import conform_chunk
from ..core.port import BatchRecord, DatasetSpec, utc_now
from .catalog import Catalog, batch_errors
from .client import AEPClient, AEPError, PollTimeout
from .contract import BATCH_DONE, BATCH_OK, IMPORT
from .queries import QueryService
from .registry import SchemaRegistry
from .xdm import flat_view_sql, mapping_for, to_nested

logger = logging.getLogger(__name__)


class BatchFailed(AEPError):
    """A batch ended in a failed state (its errors in the message)."""


class BatchIngestion:
    """Batches of nested XDM Parquet into the backend's XDM datasets, with their flat views."""

    def __init__(
        self,
        client: AEPClient,
        registry: SchemaRegistry,
        catalog: Catalog,
        queries: QueryService,
        flatten_paths: bool = False,
        upload_file_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.client = client
        self.registry = registry
        self.catalog = catalog
        self.queries = queries
        self.flatten_paths = flatten_paths
        self.upload_file_bytes = upload_file_bytes

    def ingest(
        self, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], replace: bool = False
    ) -> BatchRecord:
        """Ingest every chunk as nested Parquet files of one batch; all of it, or an aborted or failed batch."""
        mapping = mapping_for(spec, self.registry.tenant)
        schema_id = self.registry.schema(mapping, spec.profile_enabled)
        dataset_id, table = self.catalog.xdm_dataset(mapping.dataset, schema_id, spec.profile_enabled)
        created = utc_now()
        body: dict[str, Any] = {"datasetId": dataset_id, "inputFormat": {"format": "parquet"}}
        predecessors = self.catalog.successful_batches(dataset_id) if replace else []
        if predecessors:
            body["replay"] = {"predecessors": predecessors, "reason": "replace"}
        batch_id = self.client.post(f"{IMPORT}/batches", body)["id"]
        rows = files = 0
        try:
            for index, chunk in enumerate(chunks, start=1):
                flat = conform_chunk(chunk, spec, index)
                self._upload(
                    f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/part-{index:05d}.parquet",
                    _parquet_bytes(to_nested(flat, mapping)),
                )
                rows, files = rows + flat.num_rows, index
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"})
            status = self._wait_for_batch(batch_id)
        except BatchFailed:
            raise  # final already: nothing to abort
        except PollTimeout as exc:
            raise PollTimeout(f"{exc}; {self._abort_late(batch_id)}") from None
        except BaseException:
            self._abort(batch_id)  # an upload failed (or COMPLETE did): the batch is still loading
            raise
        self._retire(predecessors, batch_id)
        view = flat_view_sql(mapping, table, self.flatten_paths, self.queries.dialect)
        self.queries.run_query(view, f"flat view {spec.name}")
        logger.info("Batch %s: %s rows in %d files into %s (%s)", batch_id, f"{rows:,}", files, spec.name, table)
        return BatchRecord(batch_id, spec.name, status, rows, files, created, utc_now())

    def _upload(self, url: str, payload: bytes) -> None:
        """Upload one file of a batch: in one PUT up to ``upload_file_bytes``; larger, as AEP's large file
        (``?action=INITIALIZE``, parts of at most ``upload_file_bytes`` with ``Content-Range``, then
        ``?action=COMPLETE``)."""
        octets = {"Content-Type": "application/octet-stream"}
        if len(payload) <= self.upload_file_bytes:
            self.client.call("PUT", url, data=payload, headers=octets)
            return
        self.client.call("POST", url, params={"action": "INITIALIZE"})
        for start in range(0, len(payload), self.upload_file_bytes):
            part = payload[start : start + self.upload_file_bytes]
            content_range = f"bytes {start}-{start + len(part) - 1}/{len(payload)}"
            self.client.call("PATCH", url, data=part, headers={**octets, "Content-Range": content_range})
        self.client.call("POST", url, params={"action": "COMPLETE"})

    def _wait_for_batch(self, batch_id: str) -> str:
        """Poll the Catalog until the batch is done; a failed batch raises :class:`BatchFailed` with AEP's
        errors, a batch still not done at the poll timeout :class:`~.client.PollTimeout`."""
        batch = self.client.poll(
            lambda: self.catalog.batch(batch_id),
            lambda answer: answer.get("status") in BATCH_DONE,
            f"batch {batch_id}",
        )
        if batch["status"] not in BATCH_OK:
            raise BatchFailed(f"batch {batch_id} {batch['status']}: {batch_errors(batch) or 'no error given'}")
        return batch["status"]

    def _abort(self, batch_id: str) -> AEPError | None:
        """ABORT a batch whose upload failed or that was still not done at the poll timeout; a failure to
        abort is logged (the original error matters more) and returned."""
        try:
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "ABORT"})
        except AEPError as exc:
            logger.warning("Aborting batch %s failed: %s", batch_id, exc)
            return exc
        return None

    def _abort_late(self, batch_id: str) -> str:
        """ABORT a completed batch that was still not done at the poll timeout, and say what became of it.
        AEP accepts ABORT only before a batch is loaded, so a batch already promoting may be refused and
        still become visible later; the caller is told so."""
        refused = self._abort(batch_id)
        if refused is None:
            return f"batch {batch_id} was aborted"
        return (
            f"batch {batch_id} could not be aborted ({refused}); it may still succeed and become visible: "
            "REVERT it if it does"
        )

    def _retire(self, predecessors: list[str], successor: str) -> None:
        """REVERT each replaced batch the platform did not already retire through the successor's replay."""
        for batch_id in predecessors:
            batch = self.catalog.batch(batch_id)
            if batch.get("status") not in BATCH_OK:
                logger.info("Batch %s was retired by the replay of %s (%s)", batch_id, successor, batch.get("status"))
                continue
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "REVERT"})
            logger.info("Reverted batch %s (replaced by %s)", batch_id, successor)


def _parquet_bytes(table: pa.Table) -> bytes:
    """A table as one Parquet file in memory."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
