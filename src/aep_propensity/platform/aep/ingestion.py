"""Batch Ingestion (``/data/foundation/import``): one batch of nested XDM Parquet per ``ingest``, all or nothing.

The flat dataset ``X`` becomes the XDM dataset ``X_xdm`` (:mod:`.xdm` maps it; its schema from the
:class:`~.registry.SchemaRegistry`, the dataset from the :class:`~.catalog.Catalog`). Each chunk is
uploaded as one nested Parquet file of the batch (a file larger than ``upload_file_bytes``, 256 MB, as
AEP's large file in parts), then the batch is COMPLETEd and polled to ``success``; a failed upload is
ABORTed, so nothing becomes visible. A batch whose end the client does not see (the poll times out, or
the connection is lost after COMPLETE) is ABORTed too, but AEP takes ABORT only before a batch is
loaded: when it refuses, :class:`BatchInDoubt` (logged as an error) names the batch, its dataset and
its run, which may still land. Every batch is tagged with its run id (``tags["aep_propensity/run"]``).
A replacing batch first waits for the dataset's batches still landing, so a failed run's late batch is
among the predecessors it supersedes: the next run that replaces the dataset converges. The flat view
``X`` (``CREATE OR REPLACE VIEW X AS SELECT <xdm path> AS <column> ...`` over the dataset's Query
Service table) gives the pipelines their flat columns.

A replacing batch is created as AEP's replay of the dataset's current successful batches (``"replay":
{"predecessors": [...], "reason": "replace"}``), which lets the platform retire them when it succeeds.
Once it has, every predecessor still ``success``/``active`` (a platform that did not retire it) is
REVERTed; one already retired is left alone. A replacing batch that fails leaves its predecessors as
they were.

AEP's bounds are planned around before any request that would cross them: a batch of more than
``files_per_batch`` files (25,000) or ``batch_bytes`` bytes (1 TB) is refused with
:class:`BatchTooLarge`, before the batch is created when the chunks are a sized collection, else before
the file that would cross it is uploaded (the batch then ABORTed, so nothing lands). Scores for 10
million people go as one batch of part files (one per chunk; 77 files at 131,072 rows a chunk). A
batch into a profile-enabled dataset first counts the sandbox's batches created today (UTC) into
profile-enabled datasets and warns when this one goes past ``profile_batches_per_day`` (90, a soft
limit: AEP takes more, slower), and a profile-enabled batch of more than 2 million records is warned
about too (Profile ingests larger upsert batches up to ten times slower). The backend's own ledger
datasets (``aep_propensity_audiences``, ``aep_propensity_deliveries``) are not profile-enabled, so their
batches do not count.

Adobe's references: the Batch Ingestion API guide, with its large files and batch replay
(https://experienceleague.adobe.com/en/docs/experience-platform/ingestion/batch/api-overview), and
the data ingestion guardrails: 25,000 files and 1 TB per batch (the batch ingestion overview's 1,500
files and 100 GB are the recommended size), 90 Profile or ExperienceEvent batches a day
(https://experienceleague.adobe.com/en/docs/experience-platform/ingestion/guardrails).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sized
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.chunks import conform_chunk
from ..core.port import BatchRecord, DatasetSpec, utc_now
from .catalog import Catalog, batch_errors
from .client import AEPClient, AEPError, PollTimeout
from .contract import BATCH_DONE, BATCH_OK, CATALOG, IMPORT, RUN_TAG
from .queries import QueryService
from .registry import SchemaRegistry
from .xdm import flat_view_sql, mapping_for, to_nested

logger = logging.getLogger(__name__)

#: AEP's data ingestion guardrails (see the module's references).
FILES_PER_BATCH = 25_000
BATCH_BYTES = 10**12  # 1 TB
PROFILE_BATCHES_PER_DAY = 90
PROFILE_UPSERT_ROWS = 2_000_000  # Profile takes larger upsert batches up to ten times slower


class BatchFailed(AEPError):
    """A batch ended in a failed state (its errors in the message)."""


class BatchTooLarge(AEPError):
    """A batch would take more files or bytes than AEP takes in one batch: refused before the upload."""


class BatchInDoubt(AEPError):
    """A completed batch whose end the client did not see and could not abort: it may still land."""


class BatchIngestion:
    """Batches of nested XDM Parquet into the backend's XDM datasets, with their flat views."""

    def __init__(
        self,
        client: AEPClient,
        registry: SchemaRegistry,
        catalog: Catalog,
        queries: QueryService,
        run_id: str,
        flatten_paths: bool = False,
        upload_file_bytes: int = 256 * 1024 * 1024,
        files_per_batch: int = FILES_PER_BATCH,
        batch_bytes: int = BATCH_BYTES,
        profile_batches_per_day: int = PROFILE_BATCHES_PER_DAY,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.registry = registry
        self.catalog = catalog
        self.queries = queries
        self.flatten_paths = flatten_paths
        self.upload_file_bytes = upload_file_bytes
        self.files_per_batch = files_per_batch
        self.batch_bytes = batch_bytes
        self.profile_batches_per_day = profile_batches_per_day

    def ingest(
        self, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], replace: bool = False
    ) -> BatchRecord:
        """Ingest every chunk as nested Parquet files of one batch; all of it, or an aborted or failed batch."""
        if isinstance(chunks, Sized) and len(chunks) > self.files_per_batch:
            raise self._too_large(spec.name, f"{len(chunks):,} files")
        mapping = mapping_for(spec, self.registry.tenant)
        schema_id = self.registry.schema(mapping, spec.profile_enabled)
        dataset_id, table = self.catalog.xdm_dataset(mapping.dataset, schema_id, spec.profile_enabled)
        created = utc_now()
        body: dict[str, Any] = {
            "datasetId": dataset_id,
            "inputFormat": {"format": "parquet"},
            "tags": {RUN_TAG: [self.run_id]},
        }
        if spec.profile_enabled:
            self._check_profile_budget(spec.name)
        if replace:
            self._wait_for_landing_batches(dataset_id, spec.name)
        predecessors = self.catalog.successful_batches(dataset_id) if replace else []
        if predecessors:
            body["replay"] = {"predecessors": predecessors, "reason": "replace"}
        batch_id = self.client.post(f"{IMPORT}/batches", body)["id"]
        rows = files = size = 0
        completing = False
        try:
            for index, chunk in enumerate(chunks, start=1):
                # refuse_nul: the Query Service stand-ins (PostgreSQL) cannot store a NUL character
                flat = conform_chunk(chunk, spec, index, refuse_nul=True)
                payload = _parquet_bytes(to_nested(flat, mapping))
                if index > self.files_per_batch or size + len(payload) > self.batch_bytes:
                    raise self._too_large(spec.name, f"{index:,} files of {size + len(payload):,} bytes")
                self._upload(
                    f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/part-{index:05d}.parquet", payload
                )
                rows, files, size = rows + flat.num_rows, index, size + len(payload)
            if spec.profile_enabled and rows > PROFILE_UPSERT_ROWS:
                logger.warning(
                    "Batch %s into %s holds %s records: Real-Time Customer Profile ingests upsert batches of more "
                    "than %s records up to ten times slower (a soft guardrail)",
                    batch_id,
                    spec.name,
                    f"{rows:,}",
                    f"{PROFILE_UPSERT_ROWS:,}",
                )
            completing = True  # from here AEP may have the COMPLETE, even if the call fails
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"})
            status = self._wait_for_batch(batch_id)
        except BatchFailed:
            raise  # final already: nothing to abort
        except BaseException as exc:
            refused = self._abort(batch_id)  # an upload failed, or the batch's end was not seen
            if completing and refused is not None:
                raise self._in_doubt(batch_id, spec.name, exc, refused) from exc
            if isinstance(exc, PollTimeout):
                raise PollTimeout(f"{exc}; batch {batch_id} was aborted") from None
            raise
        self._retire(predecessors, batch_id)
        view = flat_view_sql(mapping, table, self.flatten_paths, self.queries.dialect)
        self.queries.run_query(view, f"flat view {spec.name}")
        logger.info("Batch %s: %s rows in %d files into %s (%s)", batch_id, f"{rows:,}", files, spec.name, table)
        return BatchRecord(batch_id, spec.name, status, rows, files, created, utc_now(), run_id=self.run_id)

    def _too_large(self, dataset: str, what: str) -> BatchTooLarge:
        """The refusal of a batch of ``dataset`` holding ``what``, past AEP's bounds of one batch."""
        return BatchTooLarge(
            f"a batch of {dataset!r} would hold {what}: AEP takes at most {self.files_per_batch:,} files and "
            f"{self.batch_bytes:,} bytes in one batch; ingest fewer, larger chunks or split the dataset's rows "
            "over several ingests (nothing was uploaded past the limit; an open batch was aborted)"
        )

    def _check_profile_budget(self, dataset: str) -> None:
        """Warn when a batch of ``dataset`` (profile-enabled) goes past the day's profile-batch budget: the
        sandbox's batches created since midnight UTC into profile-enabled datasets, this one included."""
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        today = self.catalog._list("batches", {"createdAfter": int(midnight.timestamp() * 1000)}).values()
        datasets = {batch["relatedObjects"][0]["id"] for batch in today if batch.get("relatedObjects")}
        profile = {key for key in datasets if _profile_enabled(self.client.get(f"{CATALOG}/dataSets/{key}"))}
        count = 1 + sum(
            1 for batch in today if batch.get("relatedObjects") and batch["relatedObjects"][0]["id"] in profile
        )
        if count > self.profile_batches_per_day:
            logger.warning(
                "Batch %d of the day into profile-enabled datasets (%s): past AEP's guidance of %d a day "
                "(a soft limit: more batches slow Profile ingestion; "
                "https://experienceleague.adobe.com/en/docs/experience-platform/ingestion/guardrails)",
                count,
                dataset,
                self.profile_batches_per_day,
            )

    def _in_doubt(self, batch_id: str, dataset: str, cause: BaseException, refused: AEPError) -> BatchInDoubt:
        """The error for a completed batch whose end was not seen and that could not be aborted, logged
        loudly: it may still land, and the next replacing batch of the dataset supersedes it."""
        error = BatchInDoubt(
            f"batch {batch_id} of dataset {dataset!r} (run {self.run_id}) may still land: its COMPLETE was sent "
            f"but its end was not seen ({type(cause).__name__}: {cause}) and the ABORT failed ({refused}). "
            f"The next replacing batch of {dataset!r} waits for it and supersedes it; until then "
            f"{dataset!r} may hold this failed run's rows"
        )
        logger.error("%s", error)
        return error

    def _wait_for_landing_batches(self, dataset_id: str, dataset: str) -> None:
        """Wait (up to the poll timeout) until no batch of the dataset is landing: completed (by any run, a
        failed one's included) but not yet final. A replacing batch then replays every batch that landed,
        so a failed run's late batch is superseded, never left beside the new one."""

        def landing() -> list[str]:
            return [
                key
                for key, batch in self.catalog.dataset_batches(dataset_id).items()
                if batch.get("status") not in BATCH_DONE and batch.get("status") != "loading"
            ]

        waiting = landing()
        if waiting:
            logger.warning("Dataset %s has batches still landing (%s); waiting for them first", dataset, waiting)
            self.client.poll(landing, lambda left: not left, f"batches landing in dataset {dataset}")

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
        """ABORT a batch whose upload failed or whose end was not seen; a failure to abort is logged (the
        original error matters more) and returned. AEP accepts ABORT only before a batch is loaded."""
        try:
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "ABORT"})
        except AEPError as exc:
            logger.warning("Aborting batch %s failed: %s", batch_id, exc)
            return exc
        return None

    def _retire(self, predecessors: list[str], successor: str) -> None:
        """REVERT each replaced batch the platform did not already retire through the successor's replay."""
        for batch_id in predecessors:
            batch = self.catalog.batch(batch_id)
            if batch.get("status") not in BATCH_OK:
                logger.info("Batch %s was retired by the replay of %s (%s)", batch_id, successor, batch.get("status"))
                continue
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "REVERT"})
            logger.info("Reverted batch %s (replaced by %s)", batch_id, successor)


def _profile_enabled(answer: dict[str, Any]) -> bool:
    """Whether a Catalog ``{id: dataset}`` answer is a dataset enabled for Profile."""
    dataset = next(iter(answer.values()), {})
    return "enabled:true" in (dataset.get("tags") or {}).get("unifiedProfile", [])


def _parquet_bytes(table: pa.Table) -> bytes:
    """A table as one Parquet file in memory."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
