"""``AEPPlatform``: the Platform port on Adobe Experience Platform, a facade over one component per AEP service.

Each component holds one service of AEP and gets what it needs in its constructor:

- :class:`~.registry.SchemaRegistry` (the tenant, checked once per instance; schemas, field groups,
  identity descriptors, union tags),
- :class:`~.catalog.Catalog` (datasets, batches, paging),
- :class:`~.exports.DatasetExport` (dataset export flows to the Data Landing Zone, copied into the
  port's layout),
- :class:`~.queries.QueryService` (interactive SQL with connection parameters cached per token; CTAS,
  views and drops through the queries API; bulk reads through an export),
- :class:`~.ingestion.BatchIngestion` (nested XDM Parquet batches, large files, replay and retire,
  abort; the flat views),
- :class:`~.segmentation.Segmentation` (segment definitions and jobs of the project's own audiences),
- :class:`~.destinations.Activation` (destination flows and the record of deliveries).

They share one :class:`~.client.AEPClient` (one session, one IMS token). The Flow Service helpers the
export and activation share are in :mod:`.flows`, AEP's paths, spec ids, media types and statuses in
:mod:`.contract`, the flat-to-XDM mapping in :mod:`.xdm`.

Scores: every scoring run is its own batch of ``propensity_scores`` with its ``run_id``; history stays,
and ``enriched_profiles`` gives every profile the score of one run, the latest, which keeps one run's
scores from duplicating another's; a failed run's batch is aborted or failed, so it is never visible.

AEP's guardrails (files and bytes per batch, profile batches a day, attributes and audiences per
destination; see :mod:`.ingestion` and :mod:`.destinations`) default to Adobe's documented values and
are options, for a sandbox with other limits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator

import pandas as pd
import pyarrow as pa

from ..core.port import (
    INTERACTIVE_ROW_LIMIT,
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    BatchRecord,
    DatasetSpec,
    Delivery,
    Destination,
    ExportRecord,
    ProfileSource,
    TableHandle,
)
from .catalog import Catalog
from .client import AEPClient
from .destinations import MAX_ATTRIBUTES, MAX_AUDIENCES, Activation
from .exports import DatasetExport
from .ingestion import BATCH_BYTES, FILES_PER_BATCH, PROFILE_BATCHES_PER_DAY, BatchIngestion
from .queries import QueryService
from .registry import SchemaRegistry
from .segmentation import Segmentation


class AEPPlatform:
    """The Platform port on AEP (or the local AEP emulator) through :class:`AEPClient`."""

    def __init__(
        self,
        client: AEPClient,
        tenant: str | None = None,
        query_dialect: str = "spark",
        flatten_paths: bool = False,
        sslmode: str = "require",
        interactive_row_limit: int = INTERACTIVE_ROW_LIMIT,
        upload_file_bytes: int = 256 * 1024 * 1024,
        files_per_batch: int = FILES_PER_BATCH,
        batch_bytes: int = BATCH_BYTES,
        profile_batches_per_day: int = PROFILE_BATCHES_PER_DAY,
        max_attributes: int = MAX_ATTRIBUTES,
        max_audiences: int = MAX_AUDIENCES,
    ) -> None:
        self.client = client
        self.registry = SchemaRegistry(client, tenant)
        self.catalog = Catalog(client)
        self.exports = DatasetExport(client, self.catalog)
        self.queries = QueryService(client, self.exports, query_dialect, sslmode, interactive_row_limit)
        self.run_id = uuid.uuid4().hex  # this platform session's: it tags the batches it makes
        self.ingestion = BatchIngestion(
            client,
            self.registry,
            self.catalog,
            self.queries,
            self.run_id,
            flatten_paths,
            upload_file_bytes,
            files_per_batch,
            batch_bytes,
            profile_batches_per_day,
        )
        self.segmentation = Segmentation(client, self.queries, self.ingestion)
        self.activation = Activation(
            client, self.registry, self.segmentation, self.queries, self.ingestion, max_attributes, max_audiences
        )

    def __repr__(self) -> str:
        return f"AEPPlatform({self.client!r}, dialect={self.dialect!r})"

    @property
    def dialect(self) -> str:
        """The sqlglot dialect of the Query Service (``spark`` on AEP, ``postgres`` on the emulator)."""
        return self.queries.dialect

    @property
    def tenant(self) -> str:
        """The sandbox's tenant id (read once per instance)."""
        return self.registry.tenant

    @property
    def interactive_row_limit(self) -> int:
        """The most rows one interactive query may return."""
        return self.queries.interactive_row_limit

    # -- Query Service --------------------------------------------------------------------------

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query (see :meth:`.QueryService.query`)."""
        return self.queries.query(sql)

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a query, through an export beyond the interactive row limit."""
        return self.queries.read_batches(sql, batch_rows)

    def exists(self, table: str) -> bool:
        """Whether ``table`` (a dataset's table or a view) exists."""
        return self.queries.exists(table)

    def handle(self, table: str) -> TableHandle:
        """A handle (name, columns, row count) on an existing table or view."""
        return self.queries.handle(table)

    def create_table_as(self, name: str, sql: str) -> TableHandle:
        """Materialise ``sql`` as the table (and dataset) ``name`` by CTAS."""
        return self.queries.create_table_as(name, sql)

    def create_view(self, name: str, sql: str) -> TableHandle:
        """Define ``name`` as a view of ``sql``."""
        return self.queries.create_view(name, sql)

    # -- ingestion, Catalog, export -------------------------------------------------------------

    def ingest(
        self, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], replace: bool = False
    ) -> BatchRecord:
        """Ingest every chunk as one batch (see :meth:`.BatchIngestion.ingest`)."""
        return self.ingestion.ingest(spec, chunks, replace)

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The Catalog's batches of the backend's datasets, newest first, optionally of one flat dataset."""
        return self.catalog.batches(dataset)

    def export(self, table: str, location: str) -> ExportRecord:
        """Export ``table``'s dataset to ``location`` (see :meth:`.DatasetExport.export`)."""
        return self.exports.export(table, location)

    # -- audiences and activation ---------------------------------------------------------------

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the segment definition, or update it when its rule, description or source changed."""
        return self.segmentation.upsert_audience(definition, source)

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Run a segment job for the audience and wait for it."""
        return self.segmentation.evaluate_audience(audience_id)

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The segment jobs of the project's own audiences, newest first (by default each one's latest success)."""
        return self.segmentation.audience_jobs(latest_only)

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver evaluated audiences to ``destination`` (see :meth:`.Activation.activate`)."""
        return self.activation.activate(job_ids, destination, attributes, force)

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The recorded deliveries, newest first, optionally to one destination."""
        return self.activation.deliveries(destination)
