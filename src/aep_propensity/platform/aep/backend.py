"""``AEPPlatform``: the Platform port on Adobe Experience Platform's REST APIs and Query Service.

How each port operation is done on AEP (aep-api.md names the calls):

- ``ingest``: the flat dataset ``X`` becomes the XDM dataset ``X_xdm`` (:mod:`..xdm` maps it; the
  tenant field group and schema are got or created by title, the dataset by name, and the schema's
  identity descriptor and profile (union) tag are checked on every run, so a run that stopped half
  way is healed by the next). Each chunk is uploaded as one nested Parquet file of the batch (a file
  larger than ``upload_file_bytes``, 256 MB, as AEP's large file in parts), then COMPLETE and polled to
  ``success``; a failed upload is ABORTed, so nothing becomes visible. A batch still not done at the
  poll timeout is ABORTed too, but AEP takes ABORT only before a batch is loaded: when it refuses, the
  timeout error says that the batch may still land and must then be REVERTed. The flat view ``X``
  (``CREATE OR REPLACE VIEW X AS SELECT <xdm path> AS <column> ...`` over the dataset's Query Service
  table, read from its ``adobe/pqs/table`` tag) gives the pipelines their flat columns back.
- ``replace``: the replacing batch is created as AEP's replay of the dataset's current successful
  batches (``"replay": {"predecessors": [...], "reason": "replace"}``, aep-api.md §4), which lets
  the platform retire them when it succeeds. Once it has succeeded, every predecessor that is still
  ``success``/``active`` (a platform, or the emulator, that did not retire it) is REVERTed; a
  predecessor already retired is left alone. A replacing batch that fails leaves its predecessors as
  they were.
- ``query``/``handle``/``exists``: interactive SQL over psycopg2 with the connection parameters of
  ``GET /query/connection_parameters`` (``sslmode`` from config), rows fetched on the client. AEP may
  cut an interactive result at its row limit (50,000) rather than fail, so a result of that many rows
  is an overflow error; an SQL error is an :class:`AEPError` with the Query Service's message.
  ``read_batches`` reads interactively what stays under that limit and anything else through an
  export (CTAS into a scratch table, exported, read, dropped).
- ``create_table_as``/``create_view``: ``DROP TABLE`` then ``CREATE TABLE ... AS``, or ``CREATE OR
  REPLACE VIEW``, through the Queries API (``POST /queries``, polled to ``SUCCESS``). SQL is transpiled
  from the canonical dialect to ``query_dialect`` (``spark`` on AEP, ``postgres`` on the emulator).
- ``export``: the dataset export flow to the Data Landing Zone (base, source and target connections,
  a flow, an ad-hoc run polled through the Flow Service runs until its status is no longer a pending
  one; only ``success`` is OK); the run's Parquet files are copied with fsspec into the port's layout
  ``<location>/<table>/exportTime=.../part-*.parquet``. The flow and its connections are DELETEd once
  the run is over, whatever its outcome (best effort, logged), so no scheduled flow keeps running.
- audiences: segment definitions (PQL over XDM paths) got or created by name (definitions and jobs
  are read page by page), segment jobs polled to ``SUCCEEDED``; only jobs evaluating one of the
  project's own audiences (those its audience dataset records) count, since a sandbox also lists
  scheduled jobs over every segment. Activation goes through a Data Landing Zone destination flow
  (profile-store source, the audience's segment selector, profile selectors for the identity
  ``_{tenant}.userid`` and each attribute's XDM path, ad-hoc run; deleted afterwards like an export's);
  the CSV columns are found by their header (XDM path -> flat name), never by position, and handed
  to the configured ``files`` destination.
- The ledger: batches are read from the Catalog and audience jobs from the Segmentation API, as AEP
  records them. Deliveries have no AEP record naming the audience job they delivered, so the backend
  keeps them itself in a small dataset, ``aep_propensity_deliveries`` (ingested like any other, one
  batch per delivery, read through its flat view).
- Scores: every scoring run is its own batch of ``propensity_scores`` with its ``run_id``; history
  stays, and ``enriched_profiles`` resolves the latest run per profile. That (the run column with
  latest resolution, as in the local backend) is what keeps one run's scores from duplicating
  another's; a failed run's batch is aborted or failed, so it is never visible.

Where each part lives: this module holds :class:`AEPPlatform` (Query Service, CTAS and views, Schema
Registry and Catalog, ingestion, export); audiences, activation and the two small datasets are its
:class:`~.audiences.AEPAudiences` mixin; the Flow Service helpers export and activation share (flow
objects deleted after a run, the Data Landing Zone, run polling) are in :mod:`.flows`; AEP's paths, spec
ids, media types and statuses are in :mod:`.contract`.
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.chunks import conform_chunk
from ..core.port import (
    INTERACTIVE_ROW_LIMIT,
    BatchRecord,
    DatasetSpec,
    ExportRecord,
    PlatformError,
    TableHandle,
    check_name,
    utc_now,
)
from ..core.sql import identifier, transpile
from .audiences import AEPAudiences
from .client import AEPClient, AEPError, PollTimeout
from .contract import (
    ADHOC_RUN,
    BATCH_DONE,
    BATCH_OK,
    CATALOG,
    CATALOG_PAGE,
    DATASET_ADHOC_ACCEPT,
    DATASET_SOURCE_SPEC,
    IMPORT,
    QUERY,
    QUERY_DONE,
    SCHEMAS,
    XDM_V2_JSON,
    XED_ID_JSON,
    XED_JSON,
    from_ms,
)
from .flows import _dlz_filesystem, _flow, _FlowObjects, _target_connection, _wait_for_run
from .xdm import XdmMapping, check_tenant, flat_view_sql, mapping_for, to_nested

logger = logging.getLogger(__name__)

COPY_BUFFER_BYTES = 16 * 1024 * 1024


class BatchFailed(AEPError):
    """A batch ended in a failed state (its errors in the message)."""


def _first(items: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one ``(id, object)`` of AEP's id-keyed answer."""
    if not items:
        raise AEPError("AEP answered an empty object where one was expected")
    key = next(iter(items))
    return key, items[key]


def export_stamp() -> str:
    """This second as the port's ``exportTime`` (``YYYYmmddHHMMSS``)."""
    return utc_now().strftime("%Y%m%d%H%M%S")


class AEPPlatform(AEPAudiences):
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
    ) -> None:
        self.client = client
        self._tenant = check_tenant(tenant) if tenant else None
        self._tenant_checked = False
        self.query_dialect = query_dialect
        self.flatten_paths = flatten_paths
        self.sslmode = sslmode
        self.interactive_row_limit = interactive_row_limit
        self.upload_file_bytes = upload_file_bytes

    def __repr__(self) -> str:
        return f"AEPPlatform({self.client!r}, dialect={self.query_dialect!r})"

    @property
    def dialect(self) -> str:
        """The sqlglot dialect of the Query Service (``spark`` on AEP, ``postgres`` on the emulator)."""
        return self.query_dialect

    @property
    def tenant(self) -> str:
        """The tenant id (``GET /stats`` once per instance, then cached); a configured tenant must match it."""
        if self._tenant_checked:
            assert self._tenant is not None
            return self._tenant
        actual = self.client.get(f"{SCHEMAS}/stats", headers={"Accept": XED_JSON}).get("tenantId")
        if not actual:
            raise AEPError("GET /stats answered no tenantId: the credential lacks Schema Registry permissions")
        if self._tenant and self._tenant != actual:
            raise AEPError(f"configured tenant {self._tenant!r} differs from the sandbox's tenant {actual!r}")
        self._tenant, self._tenant_checked = actual, True
        return actual

    # -- Query Service -------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        """A psycopg2 connection to Query Service with the parameters the API gives."""
        params = self.client.get(f"{QUERY}/connection_parameters")
        try:
            conn = psycopg2.connect(
                host=params["host"],
                port=params["port"],
                dbname=params["dbName"],
                user=params["username"],
                password=params["token"],
                sslmode=self.sslmode,
                connect_timeout=int(self.client.timeout_seconds),
            )
        except psycopg2.OperationalError as exc:
            raise AEPError(f"connecting to Query Service at {params['host']}:{params['port']} failed: {exc}") from None
        try:
            if params.get("searchPath"):  # the emulator's schema; real AEP never sends it
                with conn.cursor() as cur:
                    _execute(cur, f"SET search_path TO {identifier(params['searchPath'])}")
            yield conn
        finally:
            conn.close()

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query. AEP may cut an interactive result at its row limit instead of failing,
        so a result of ``interactive_row_limit`` rows or more is an overflow error; an SQL error is an
        :class:`AEPError` with the Query Service's message."""
        limit = self.interactive_row_limit
        with self._connect() as conn, conn.cursor() as cur:
            _execute(cur, transpile(sql, self.dialect))
            try:
                rows = cur.fetchmany(limit)
            except psycopg2.Error as exc:
                raise _query_error(exc) from None
            columns = [d.name for d in cur.description]
        if len(rows) >= limit:
            raise PlatformError(
                f"interactive query reached the interactive row limit of {limit:,}; read bulk data through export"
            )
        return pd.DataFrame(rows, columns=columns)

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a canonical-dialect query: interactively when they fit the interactive row
        limit, else through a dataset export (CTAS into a scratch table, exported, read, dropped), since
        AEP caps interactive results and bulk data never travels that way."""
        count = self.query(f"SELECT count(*) AS n FROM ({sql}) AS counted")
        if int(count.iloc[0, 0]) < self.interactive_row_limit:  # as query(): the limit itself is an overflow
            yield from pa.Table.from_pandas(self.query(sql), preserve_index=False).to_batches(batch_rows)
            return
        scratch = f"_read_{uuid.uuid4().hex[:16]}"
        self.create_table_as(scratch, sql)
        try:
            with tempfile.TemporaryDirectory() as folder:
                record = self.export(scratch, folder)
                fs, path = fsspec.core.url_to_fs(record.path)
                for part in sorted(fs.ls(path, detail=False)):
                    yield from pq.ParquetFile(part, filesystem=fs).iter_batches(batch_rows)
        finally:
            self.run_query(transpile(f"DROP TABLE IF EXISTS {identifier(scratch)}", self.dialect), f"drop {scratch}")

    def _columns(self, table: str) -> tuple[str, ...] | None:
        """The columns of ``table``, or None when it does not exist."""
        check_name(table)
        with self._connect() as conn, conn.cursor() as cur:
            try:
                cur.execute(f"SELECT * FROM {identifier(table)} LIMIT 0")
            except psycopg2.errors.UndefinedTable:
                return None
            except psycopg2.Error as exc:
                raise _query_error(exc) from None
            return tuple(d.name for d in cur.description)

    def exists(self, table: str) -> bool:
        """Whether ``table`` (a dataset's table or a view) exists on the Query Service."""
        return self._columns(table) is not None

    def handle(self, table: str) -> TableHandle:
        """A handle (name, columns, row count) on an existing table or view."""
        columns = self._columns(table)
        if columns is None:
            raise PlatformError(f"table {table!r} does not exist on the platform: run the pipeline that makes it first")
        count = self.query(f"SELECT count(*) AS n FROM {identifier(table)}")
        return TableHandle(table, columns, int(count.iloc[0, 0]))

    def run_query(self, sql: str, name: str) -> dict[str, Any]:
        """Run ``sql`` (already in the Query Service's dialect) through the Queries API and wait for it."""
        dbname = self.client.get(f"{QUERY}/connection_parameters")["dbName"]
        body = {"dbName": dbname, "sql": sql, "name": name, "description": "aep-propensity"}
        query_id = self.client.post(f"{QUERY}/queries", body)["id"]
        done = self.client.poll(
            lambda: self.client.get(f"{QUERY}/queries/{query_id}"),
            lambda answer: answer.get("state") in QUERY_DONE,
            f"query {name} ({query_id})",
        )
        if done["state"] != "SUCCESS":
            errors = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in done.get("errors", []))
            raise AEPError(f"query {name} ({query_id}) {done['state']}: {errors or 'no error given'}")
        return done

    def create_table_as(self, name: str, sql: str) -> TableHandle:
        """Materialise ``sql`` as the table (and dataset) ``name`` by CTAS through the Queries API."""
        check_name(name)
        table = identifier(name)
        self.run_query(transpile(f"DROP TABLE IF EXISTS {table}", self.dialect), f"drop {name}")
        self.run_query(transpile(f"CREATE TABLE {table} AS {sql}", self.dialect), f"ctas {name}")
        logger.info("Created table %s by CTAS", name)
        return self.handle(name)

    def create_view(self, name: str, sql: str) -> TableHandle:
        """Define ``name`` as a view of ``sql`` by ``CREATE OR REPLACE VIEW`` (as the flat views are)."""
        check_name(name)
        view = identifier(name)
        self.run_query(transpile(f"CREATE OR REPLACE VIEW {view} AS {sql}", self.dialect), f"view {name}")
        logger.info("Defined view %s", name)
        return self.handle(name)

    # -- Schema Registry and Catalog -----------------------------------------------------------

    def _find_by_title(self, kind: str, title: str) -> dict[str, Any] | None:
        """The tenant ``fieldgroups``/``schemas`` resource titled ``title``, if any."""
        answer = self.client.get(
            f"{SCHEMAS}/tenant/{kind}", params={"property": f"title=={title}"}, headers={"Accept": XED_ID_JSON}
        )
        return next((item for item in answer.get("results", []) if item.get("title") == title), None)

    def _schema(self, mapping: XdmMapping, profile_enabled: bool) -> str:
        """The ``$id`` of the dataset's schema, got or created with its field group, then its identity
        descriptor and profile (union) tag made sure of: each step is checked on every run, so a run that
        stopped between two of them is healed by the next."""
        group = self._find_by_title("fieldgroups", mapping.field_group_title())
        if group is None:
            group = self.client.post(f"{SCHEMAS}/tenant/fieldgroups", mapping.field_group_json())
        schema = self._find_by_title("schemas", mapping.schema_title(group["$id"]))
        if schema is None:
            schema = self.client.post(f"{SCHEMAS}/tenant/schemas", mapping.schema_json(group["$id"]))
        if mapping.identity is not None:
            self._ensure_identity_descriptor(mapping, schema["$id"])
        if profile_enabled:
            self._ensure_union_tag(schema["meta:altId"])
        return schema["$id"]

    def _ensure_identity_descriptor(self, mapping: XdmMapping, schema_id: str) -> None:
        """Create the schema's primary identity descriptor unless it already has one."""
        answer = self.client.get(f"{SCHEMAS}/tenant/descriptors", headers={"Accept": XDM_V2_JSON})
        if not any(
            item.get("@type") == "xdm:descriptorIdentity"
            and item.get("xdm:sourceSchema") == schema_id
            and item.get("xdm:isPrimary")
            for item in _descriptor_items(answer)
        ):
            self.client.post(f"{SCHEMAS}/tenant/descriptors", mapping.identity_descriptor(schema_id))
            logger.info("Created the identity descriptor of schema %s", schema_id)

    def _ensure_union_tag(self, alt_id: str) -> None:
        """Enable the schema for Profile (``meta:immutableTags: ["union"]``) unless it already is."""
        schema = self.client.get(f"{SCHEMAS}/tenant/schemas/{alt_id}", headers={"Accept": f"{XED_JSON}; version=1"})
        if "union" not in (schema.get("meta:immutableTags") or []):
            patch = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
            self.client.patch(f"{SCHEMAS}/tenant/schemas/{alt_id}", patch)
            logger.info("Enabled schema %s for Profile", alt_id)

    def _find_dataset(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """The Catalog dataset named ``name`` (id and object), if any."""
        answer = self.client.get(f"{CATALOG}/dataSets", params={"name": name, "limit": 100})
        return next(((key, item) for key, item in answer.items() if item.get("name") == name), None)

    def _dataset(self, mapping: XdmMapping, profile_enabled: bool) -> tuple[str, str]:
        """The id and Query Service table of the XDM dataset ``<name>_xdm``, created if missing."""
        name = f"{mapping.dataset}_xdm"
        schema_id = self._schema(mapping, profile_enabled)
        found = self._find_dataset(name)
        if found is None:
            tags = {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]} if profile_enabled else {}
            body = {
                "name": name,
                "schemaRef": {"id": schema_id, "contentType": f"{XED_JSON};version=1"},
                "fileDescription": {"persisted": True, "containerFormat": "parquet", "format": "parquet"},
                "tags": tags,
            }
            dataset_id = self.client.post(f"{CATALOG}/dataSets", body, params={"requestDataSource": "true"})[0]
            found = _first(self.client.get(f"{CATALOG}/dataSets/{dataset_id.rsplit('/', 1)[-1]}"))
        dataset_id, dataset = found
        if dataset.get("schemaRef", {}).get("id") != schema_id:
            raise AEPError(
                f"dataset {name!r} exists with another schema than its flat columns map to; delete it to re-create it"
            )
        table = (dataset.get("tags", {}).get("adobe/pqs/table") or [None])[0]
        if not table:
            raise AEPError(f"dataset {name!r} has no Query Service table tag (adobe/pqs/table)")
        return dataset_id, check_name(table)

    # -- ingestion -----------------------------------------------------------------------------

    def ingest(
        self, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], replace: bool = False
    ) -> BatchRecord:
        """Ingest every chunk as nested Parquet files of one batch; all of it, or an aborted or failed batch."""
        mapping = mapping_for(spec, self.tenant)
        dataset_id, table = self._dataset(mapping, spec.profile_enabled)
        created = utc_now()
        body: dict[str, Any] = {"datasetId": dataset_id, "inputFormat": {"format": "parquet"}}
        predecessors = self._successful_batches(dataset_id) if replace else []
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
        self.run_query(flat_view_sql(mapping, table, self.flatten_paths, self.dialect), f"flat view {spec.name}")
        logger.info("Batch %s: %s rows in %d files into %s (%s)", batch_id, f"{rows:,}", files, spec.name, table)
        return BatchRecord(batch_id, spec.name, status, rows, files, created, utc_now())

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
        _, batch = _first(
            self.client.poll(
                lambda: self.client.get(f"{CATALOG}/batches/{batch_id}"),
                lambda answer: _first(answer)[1].get("status") in BATCH_DONE,
                f"batch {batch_id}",
            )
        )
        if batch["status"] not in BATCH_OK:
            errors = "; ".join(f"{e.get('code')}: {e.get('description')}" for e in batch.get("errors", []))
            raise BatchFailed(f"batch {batch_id} {batch['status']}: {errors or 'no error given'}")
        return batch["status"]

    def _catalog_list(self, collection: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Every object of a Catalog list (``dataSets``, ``batches``), id-keyed, read in pages of
        ``CATALOG_PAGE`` with a zero-based ``start`` offset (the Catalog's paging, at most 100 a page)."""
        items: dict[str, dict[str, Any]] = {}
        while True:
            page = self.client.get(
                f"{CATALOG}/{collection}", params={**params, "limit": CATALOG_PAGE, "start": len(items)}
            )
            known = len(items)
            items.update(page)
            if len(page) < CATALOG_PAGE or len(items) == known:
                return items

    def _dataset_batches(self, dataset_id: str) -> dict[str, dict[str, Any]]:
        """Every Catalog batch of a dataset, id-keyed, newest first."""
        return self._catalog_list("batches", {"dataSet": dataset_id, "orderBy": "desc:created"})

    def _successful_batches(self, dataset_id: str) -> list[str]:
        """The ids of the dataset's batches that are visible now (``success``/``active``)."""
        return [key for key, batch in self._dataset_batches(dataset_id).items() if batch.get("status") in BATCH_OK]

    def _retire(self, predecessors: list[str], successor: str) -> None:
        """REVERT each replaced batch the platform did not already retire through the successor's replay."""
        for batch_id in predecessors:
            _, batch = _first(self.client.get(f"{CATALOG}/batches/{batch_id}"))
            if batch.get("status") not in BATCH_OK:
                logger.info("Batch %s was retired by the replay of %s (%s)", batch_id, successor, batch.get("status"))
                continue
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "REVERT"})
            logger.info("Reverted batch %s (replaced by %s)", batch_id, successor)

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The Catalog's batches of the backend's datasets, newest first, optionally of one flat dataset."""
        if dataset is not None:
            found = self._find_dataset(f"{check_name(dataset)}_xdm")
            names = {found[0]: dataset} if found else {}
        else:
            names = {
                key: item["name"][: -len("_xdm")]
                for key, item in self._catalog_list("dataSets", {"properties": "name"}).items()
                if str(item.get("name", "")).endswith("_xdm")
            }
        records = [
            _batch_record(batch_id, names[dataset_id], batch)
            for dataset_id in names
            for batch_id, batch in self._dataset_batches(dataset_id).items()
        ]
        return sorted(records, key=lambda record: record.created, reverse=True)

    # -- export --------------------------------------------------------------------------------

    def export(self, table: str, location: str) -> ExportRecord:
        """Export ``table``'s dataset to the DLZ by an ad-hoc dataset export run; copy its files to ``location``.

        The connections and the flow made for the run are deleted once it is over, whatever its outcome.
        """
        check_name(table)
        found = self._find_dataset(table)
        if found is None:
            raise AEPError(f"no dataset for table {table!r}: only datasets (CTAS tables) can be exported")
        dataset_id = found[0]
        folder = f"aep-propensity/{table}"
        with _FlowObjects(self.client) as objects:
            source = objects.create(
                "sourceConnections",
                {
                    "name": f"aep-propensity export {table}",
                    "connectionSpec": {"id": DATASET_SOURCE_SPEC, "version": "1.0"},
                    "params": {"datasets": [dataset_id]},
                },
            )["id"]
            target = _target_connection(
                objects,
                f"aep-propensity export {table}",
                {"path": folder, "datasetFileType": "PARQUET", "compression": "NONE"},
            )
            flow = _flow(objects, f"aep-propensity export {table}", source, target, [])
            self.client.post(
                ADHOC_RUN,
                {"activationInfo": {"destinations": [{"flowId": flow["id"], "datasets": [{"id": dataset_id}]}]}},
                headers={"Accept": DATASET_ADHOC_ACCEPT},
            )
            run = _wait_for_run(self.client, flow["id"], f"export of {table}")
        dlz, root = _dlz_filesystem(self.client)
        exports = sorted(dlz.glob(f"{root}/{folder}/{dataset_id}/exportTime=*"))
        if not exports:
            raise AEPError(f"export of {table}: run {run.get('id')} left no files in the Data Landing Zone")
        return self._copy_export(table, dlz, exports[-1], location, run.get("id") or uuid.uuid4().hex)

    def _copy_export(
        self, table: str, dlz: fsspec.AbstractFileSystem, source: str, location: str, export_id: str
    ) -> ExportRecord:
        """Copy one DLZ export folder's parts to ``location/<table>/exportTime=<now>/`` (staged, then moved)."""
        fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
        export_time = export_stamp()
        while fs.exists(f"{root}/{table}/exportTime={export_time}"):
            time.sleep(0.2)
            export_time = export_stamp()
        staging, final = f"{root}/{table}/_staging-{export_id}", f"{root}/{table}/exportTime={export_time}"
        fs.makedirs(staging, exist_ok=True)
        rows = size = 0
        parts = sorted(path for path in dlz.ls(source, detail=False) if path.endswith(".parquet"))
        for index, part in enumerate(parts):
            copy = f"{staging}/part-{index}.parquet"
            with dlz.open(part, "rb") as reader, fs.open(copy, "wb") as writer:
                shutil.copyfileobj(reader, writer, COPY_BUFFER_BYTES)
            rows += pq.ParquetFile(copy, filesystem=fs).metadata.num_rows
            size += fs.size(copy)
        fs.mv(staging, final, recursive=True)
        logger.info("Exported %s: %s rows in %d files to %s", table, f"{rows:,}", len(parts), final)
        return ExportRecord(export_id, table, fs.unstrip_protocol(final), export_time, rows, len(parts), size)


def _descriptor_items(answer: Any) -> list[dict[str, Any]]:
    """The descriptors of a ``GET /tenant/descriptors`` answer: ``{"results": [...]}`` or, in the older
    shape, lists keyed by descriptor type."""
    if isinstance(answer, dict) and isinstance(answer.get("results"), list):
        return [item for item in answer["results"] if isinstance(item, dict)]
    if isinstance(answer, dict):
        return [
            item for items in answer.values() if isinstance(items, list) for item in items if isinstance(item, dict)
        ]
    return []


def _query_error(exc: psycopg2.Error) -> AEPError:
    """An :class:`AEPError` with the Query Service's SQLSTATE and message (never the SQL or a credential)."""
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc) or type(exc).__name__).strip()
    code = getattr(exc, "pgcode", None)
    return AEPError(f"Query Service error{f' {code}' if code else ''}: {message}", code=code)


def _execute(cursor: Any, sql: str) -> None:
    """Execute one interactive statement; an SQL error becomes an :class:`AEPError`."""
    try:
        cursor.execute(sql)
    except psycopg2.Error as exc:
        raise _query_error(exc) from None


def _parquet_bytes(table: pa.Table) -> bytes:
    """A table as one Parquet file in memory."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _batch_record(batch_id: str, dataset: str, batch: dict[str, Any]) -> BatchRecord:
    """A port :class:`BatchRecord` from a Catalog batch."""
    metrics = batch.get("metrics", {})
    errors = "; ".join(f"{e.get('code')}: {e.get('description')}" for e in batch.get("errors", [])) or None
    return BatchRecord(
        batch_id,
        dataset,
        batch.get("status", ""),
        int(metrics.get("outputRecordCount", metrics.get("outputRecordSize", 0)) or 0),
        int(metrics.get("inputFileCount", 0) or 0),
        from_ms(batch.get("created")) or utc_now(),
        from_ms(batch.get("completed")),
        errors,
    )
