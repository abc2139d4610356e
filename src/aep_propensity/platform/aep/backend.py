"""``AEPPlatform``: the Platform port on Adobe Experience Platform's REST APIs and Query Service.

How each port operation is done on AEP (aep-api.md names the calls):

- ``ingest``: the flat dataset ``X`` becomes the XDM dataset ``X_xdm`` (:mod:`..xdm` maps it; the
  tenant field group, schema, identity descriptor and profile enabling are got or created by title,
  the dataset by name). Each chunk is uploaded as one nested Parquet file of the batch (a file larger
  than ``upload_file_bytes``, 256 MB, as AEP's large file in parts), then COMPLETE and polled to ``success``;
  any failure aborts the batch, so nothing becomes visible. ``replace`` reverts the dataset's earlier
  batches once the new one succeeded. The flat view ``X`` (``CREATE OR REPLACE VIEW X AS SELECT
  <xdm path> AS <column> ...`` over the dataset's Query Service table, read from its
  ``adobe/pqs/table`` tag) gives the pipelines their flat columns back.
- ``query``/``handle``/``exists``: interactive SQL over psycopg2 with the connection parameters of
  ``GET /query/connection_parameters`` (``sslmode`` from config); more than the interactive row
  limit (50,000) is an error. ``read_batches`` reads interactively what fits that limit and
  anything larger through an export (CTAS into a scratch table, exported, read, dropped).
- ``create_table_as``/``create_view``: ``DROP`` then ``CREATE TABLE ... AS``/``CREATE VIEW`` through
  the Queries API (``POST /queries``, polled to ``SUCCESS``). SQL is transpiled from the canonical
  dialect to ``query_dialect`` (``spark`` on AEP, ``postgres`` on the emulator).
- ``export``: the dataset export flow to the Data Landing Zone (base, source and target connections,
  a flow, an ad-hoc run polled through the Flow Service runs); the run's Parquet files are copied
  with fsspec into the port's layout ``<location>/<table>/exportTime=.../part-*.parquet``.
- audiences: segment definitions (PQL over XDM paths) got or created by name, segment jobs
  polled to ``SUCCEEDED``; activation through a Data Landing Zone destination flow (profile-store
  source, segment and profile selectors, ad-hoc run), whose CSV files are handed to the configured
  ``files`` destination.
- The ledger: batches are read from the Catalog and audience jobs from the Segmentation API, as AEP
  records them. Deliveries have no AEP record naming the audience job they delivered, so the backend
  keeps them itself in a small dataset, ``aep_propensity_deliveries`` (ingested like any other, one
  batch per delivery, read through its flat view).
- Scores: every scoring run is its own batch of ``propensity_scores`` with its ``run_id``; history
  stays, and ``enriched_profiles`` resolves the latest run per profile. That (the run column with
  latest resolution, as in the local backend) is what keeps one run's scores from duplicating
  another's; a failed run's batch is aborted or failed, so it is never visible.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import fsspec
import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..destinations import Destination, FileDestination
from ..local import conform_chunk
from ..local_audiences import ProfileSource
from ..port import (
    INTERACTIVE_ROW_LIMIT,
    AudienceDefinition,
    AudienceJob,
    AudienceRecord,
    BatchRecord,
    Column,
    DatasetSpec,
    Delivery,
    ExportRecord,
    PlatformError,
    TableHandle,
    check_name,
    utc_now,
)
from ..pql import compile_pql
from ..sql import identifier, literal, transpile
from ..xdm import XdmMapping, check_tenant, flat_view_sql, mapping_for, to_nested
from .client import AEPClient, AEPError

logger = logging.getLogger(__name__)

SCHEMAS = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
QUERY = "/data/foundation/query"
FLOWS = "/data/foundation/flowservice"
SEGMENTS = "/data/core/ups"
ADHOC_RUN = "/data/core/activation/disflowprovider/adhocrun"
DLZ_CREDENTIALS = "/data/foundation/connectors/landingzone/credentials"
COPY_BUFFER_BYTES = 16 * 1024 * 1024

XED_JSON = "application/vnd.adobe.xed+json"
XED_ID_JSON = "application/vnd.adobe.xed-id+json"
DLZ_CONNECTION_SPEC = "10440537-2a7b-4583-ac39-ed38d4b848e8"
DLZ_FLOW_SPEC = "cd2fc47e-e838-4f38-a581-8fff2f99b63a"
DATASET_SOURCE_SPEC = "23598e46-f560-407b-88d5-ea6207e49db0"
PROFILE_STORE_SPEC = "8a9c3494-9708-43d7-ae3f-cda01e5030e1"
DATASET_ADHOC_ACCEPT = "application/vnd.adobe.adhoc.dataset.activation+json; version=1"
AUDIENCE_ADHOC_ACCEPT = "application/vnd.adobe.adhoc.activation+json; version=2"

BATCH_DONE = {"success", "active", "failed", "failure", "aborted", "abandoned", "inactive", "deleted"}
BATCH_OK = {"success", "active"}
QUERY_DONE = {"SUCCESS", "FAILED", "KILLED", "TIMEOUT"}
JOB_DONE = {"SUCCEEDED", "FAILED", "CANCELLED"}

AUDIENCES = DatasetSpec(
    "aep_propensity_audiences",
    (Column("id", "string"), Column("name", "string"), Column("source", "string"), Column("updated", "timestamp")),
)
DELIVERIES = DatasetSpec(
    "aep_propensity_deliveries",
    tuple(
        Column(name, kind)  # type: ignore[arg-type]
        for name, kind in [
            ("id", "string"),
            ("job_id", "string"),
            ("audience_name", "string"),
            ("destination", "string"),
            ("status", "string"),
            ("members", "int64"),
            ("files", "int64"),
            ("requests", "int64"),
            ("bytes", "int64"),
            ("started", "timestamp"),
            ("completed", "timestamp"),
            ("location", "string"),
            ("error", "string"),
        ]
    ),
)


def _first(items: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one ``(id, object)`` of AEP's id-keyed answer."""
    if not items:
        raise AEPError("AEP answered an empty object where one was expected")
    key = next(iter(items))
    return key, items[key]


def _from_ms(value: Any) -> datetime | None:
    """A naive UTC datetime from AEP's epoch milliseconds (None stays None)."""
    if value in (None, 0):
        return None
    return datetime.fromtimestamp(float(value) / 1000, UTC).replace(tzinfo=None)


def export_stamp() -> str:
    """This second as the port's ``exportTime`` (``YYYYmmddHHMMSS``)."""
    return utc_now().strftime("%Y%m%d%H%M%S")


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
    ) -> None:
        self.client = client
        self._tenant = check_tenant(tenant) if tenant else None
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
        """The tenant id (``GET /stats``); a configured tenant must match it."""
        actual = self.client.get(f"{SCHEMAS}/stats", headers={"Accept": XED_JSON}).get("tenantId")
        if not actual:
            raise AEPError("GET /stats answered no tenantId: the credential lacks Schema Registry permissions")
        if self._tenant and self._tenant != actual:
            raise AEPError(f"configured tenant {self._tenant!r} differs from the sandbox's tenant {actual!r}")
        self._tenant = actual
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
                    cur.execute(f"SET search_path TO {identifier(params['searchPath'])}")
            yield conn
        finally:
            conn.close()

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query; more than the interactive row limit is an error, as on AEP."""
        limit = self.interactive_row_limit
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(transpile(sql, self.dialect))
            rows = cur.fetchmany(limit + 1)
            columns = [d.name for d in cur.description]
        if len(rows) > limit:
            raise PlatformError(f"interactive query returned more than {limit:,} rows; read bulk data through export")
        return pd.DataFrame(rows, columns=columns)

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a canonical-dialect query: interactively when they fit the interactive row
        limit, else through a dataset export (CTAS into a scratch table, exported, read, dropped), since
        AEP caps interactive results and bulk data never travels that way."""
        count = self.query(f"SELECT count(*) AS n FROM ({sql}) AS counted")
        if int(count.iloc[0, 0]) <= self.interactive_row_limit:
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
            return tuple(d.name for d in cur.description)

    def exists(self, table: str) -> bool:
        """Whether ``table`` (a dataset's table or a view) exists on the Query Service."""
        return self._columns(table) is not None

    def handle(self, table: str) -> TableHandle:
        """A handle (name, columns, row count) on an existing table or view."""
        columns = self._columns(table)
        if columns is None:
            raise PlatformError(f"table {table!r} does not exist on the platform")
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
        """Define ``name`` as a view of ``sql`` (replacing an earlier view of that name)."""
        check_name(name)
        view = identifier(name)
        self.run_query(transpile(f"DROP VIEW IF EXISTS {view}", self.dialect), f"drop view {name}")
        self.run_query(transpile(f"CREATE VIEW {view} AS {sql}", self.dialect), f"view {name}")
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
        """The ``$id`` of the dataset's schema, created with its field group and descriptor if missing."""
        group = self._find_by_title("fieldgroups", mapping.field_group_title())
        if group is None:
            group = self.client.post(f"{SCHEMAS}/tenant/fieldgroups", mapping.field_group_json())
        schema = self._find_by_title("schemas", mapping.schema_title(group["$id"]))
        if schema is None:
            schema = self.client.post(f"{SCHEMAS}/tenant/schemas", mapping.schema_json(group["$id"]))
            if mapping.identity is not None:
                self.client.post(f"{SCHEMAS}/tenant/descriptors", mapping.identity_descriptor(schema["$id"]))
            if profile_enabled:
                patch = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
                self.client.patch(f"{SCHEMAS}/tenant/schemas/{schema['meta:altId']}", patch)
        return schema["$id"]

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
        batch = self.client.post(f"{IMPORT}/batches", {"datasetId": dataset_id, "inputFormat": {"format": "parquet"}})
        batch_id = batch["id"]
        rows = files = 0
        try:
            for index, chunk in enumerate(chunks, start=1):
                flat = conform_chunk(chunk, spec, index)
                self._upload(
                    f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/part-{index:05d}.parquet",
                    _parquet_bytes(to_nested(flat, mapping)),
                )
                rows, files = rows + flat.num_rows, index
        except BaseException:
            self._abort(batch_id)
            raise
        self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"})
        status = self._wait_for_batch(batch_id)
        if replace:
            self._revert_older_batches(dataset_id, batch_id)
        self.run_query(flat_view_sql(mapping, table, self.flatten_paths, self.dialect), f"flat view {spec.name}")
        logger.info("Batch %s: %s rows in %d files into %s (%s)", batch_id, f"{rows:,}", files, spec.name, table)
        return BatchRecord(batch_id, spec.name, status, rows, files, created, utc_now())

    def _abort(self, batch_id: str) -> None:
        """ABORT a batch whose upload failed (a failure to abort is logged: the upload's error matters more)."""
        try:
            self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "ABORT"})
        except AEPError as exc:
            logger.warning("Aborting batch %s failed: %s", batch_id, exc)

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
        """Poll the Catalog until the batch is done; a failed batch raises with AEP's errors."""
        _, batch = _first(
            self.client.poll(
                lambda: self.client.get(f"{CATALOG}/batches/{batch_id}"),
                lambda answer: _first(answer)[1].get("status") in BATCH_DONE,
                f"batch {batch_id}",
            )
        )
        if batch["status"] not in BATCH_OK:
            errors = "; ".join(f"{e.get('code')}: {e.get('description')}" for e in batch.get("errors", []))
            raise AEPError(f"batch {batch_id} {batch['status']}: {errors or 'no error given'}")
        return batch["status"]

    def _dataset_batches(self, dataset_id: str) -> dict[str, dict[str, Any]]:
        """Every Catalog batch of a dataset, id-keyed (pages of 100)."""
        batches: dict[str, dict[str, Any]] = {}
        while True:
            page = self.client.get(
                f"{CATALOG}/batches",
                params={"dataSet": dataset_id, "limit": 100, "start": len(batches), "orderBy": "desc:created"},
            )
            known = len(batches)
            batches.update(page)
            if len(page) < 100 or len(batches) == known:
                return batches

    def _revert_older_batches(self, dataset_id: str, keep: str) -> None:
        """REVERT every successful batch of the dataset except ``keep`` (a replacing ingestion)."""
        for batch_id, batch in self._dataset_batches(dataset_id).items():
            if batch_id != keep and batch.get("status") in BATCH_OK:
                self.client.call("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "REVERT"})
                logger.info("Reverted batch %s (replaced by %s)", batch_id, keep)

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The Catalog's batches of the backend's datasets, newest first, optionally of one flat dataset."""
        answer = self.client.get(f"{CATALOG}/dataSets", params={"limit": 100})
        names = {
            key: item.get("name", "")[: -len("_xdm")]
            for key, item in answer.items()
            if item.get("name", "").endswith("_xdm")
        }
        if dataset is not None:
            names = {key: name for key, name in names.items() if name == dataset}
        records = [
            _batch_record(batch_id, names[dataset_id], batch)
            for dataset_id in names
            for batch_id, batch in self._dataset_batches(dataset_id).items()
        ]
        return sorted(records, key=lambda record: record.created, reverse=True)

    # -- export --------------------------------------------------------------------------------

    def _dlz_filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The Data Landing Zone destination container as a filesystem and its root folder."""
        credentials = self.client.get(DLZ_CREDENTIALS, params={"type": "dlz_destination"})
        uri = credentials["SASUri"]
        if uri.startswith("file://"):  # the emulator: a folder instead of an Azure SAS URI
            return fsspec.core.url_to_fs(uri)
        fs = fsspec.filesystem(
            "abfs", account_name=credentials["storageAccountName"], sas_token=credentials["SASToken"]
        )
        return fs, credentials["containerName"]

    def _dlz_connection(self) -> str:
        """A base connection to the Data Landing Zone (it needs no credentials)."""
        body = {
            "name": "aep-propensity DLZ",
            "auth": None,
            "connectionSpec": {"id": DLZ_CONNECTION_SPEC, "version": "1.0"},
        }
        return self.client.post(f"{FLOWS}/connections", body)["id"]

    def _wait_for_run(self, flow_id: str, what: str) -> dict[str, Any]:
        """Poll the flow's runs until its newest run succeeded or failed; a failure raises."""

        def newest() -> dict[str, Any] | None:
            items = self.client.get(f"{FLOWS}/runs", params={"property": f"flowId=={flow_id}"}).get("items", [])
            return max(items, key=lambda run: run.get("createdAt", 0)) if items else None

        run = self.client.poll(
            newest,
            lambda run: (
                run is not None
                and run.get("metrics", {}).get("statusSummary", {}).get("status") in ("success", "failed")
            ),
            what,
        )
        assert run is not None
        if run["metrics"]["statusSummary"]["status"] != "success":
            summary = run["metrics"]["statusSummary"]
            raise AEPError(f"{what}: flow run {run.get('id')} failed: {summary.get('errors') or summary}")
        return run

    def export(self, table: str, location: str) -> ExportRecord:
        """Export ``table``'s dataset to the DLZ by an ad-hoc dataset export run; copy its files to ``location``."""
        check_name(table)
        found = self._find_dataset(table)
        if found is None:
            raise AEPError(f"no dataset for table {table!r}: only datasets (CTAS tables) can be exported")
        dataset_id = found[0]
        folder = f"aep-propensity/{table}"
        source = self.client.post(
            f"{FLOWS}/sourceConnections",
            {
                "name": f"aep-propensity export {table}",
                "connectionSpec": {"id": DATASET_SOURCE_SPEC, "version": "1.0"},
                "params": {"datasets": [dataset_id]},
            },
        )["id"]
        target = self._target_connection(
            f"aep-propensity export {table}", {"path": folder, "datasetFileType": "PARQUET", "compression": "NONE"}
        )
        flow = self._flow(f"aep-propensity export {table}", source, target, [])
        self.client.post(
            ADHOC_RUN,
            {"activationInfo": {"destinations": [{"flowId": flow["id"], "datasets": [{"id": dataset_id}]}]}},
            headers={"Accept": DATASET_ADHOC_ACCEPT},
        )
        run = self._wait_for_run(flow["id"], f"export of {table}")
        dlz, root = self._dlz_filesystem()
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

    def _target_connection(self, name: str, params: dict[str, Any]) -> str:
        """A target connection in the Data Landing Zone with ``params`` (path, file type, compression)."""
        body = {
            "name": name,
            "baseConnectionId": self._dlz_connection(),
            "params": {"mode": "Server-to-server", **params},
            "connectionSpec": {"id": DLZ_CONNECTION_SPEC, "version": "1.0"},
        }
        return self.client.post(f"{FLOWS}/targetConnections", body)["id"]

    def _flow(self, name: str, source: str, target: str, transformations: list[dict[str, Any]]) -> dict[str, Any]:
        """A Data Landing Zone flow from ``source`` to ``target`` (its id and etag)."""
        body: dict[str, Any] = {
            "name": name,
            "flowSpec": {"id": DLZ_FLOW_SPEC, "version": "1.0"},
            "sourceConnectionIds": [source],
            "targetConnectionIds": [target],
            "transformations": transformations,
        }
        if not transformations:
            body["scheduleParams"] = {"interval": 3, "timeUnit": "hour", "startTime": int(time.time())}
        return self.client.post(f"{FLOWS}/flows", body)

    # -- audiences -----------------------------------------------------------------------------

    def _definitions(self) -> list[dict[str, Any]]:
        """Every segment definition of the sandbox."""
        answer = self.client.get(f"{SEGMENTS}/segment/definitions", params={"limit": 100})
        return list(answer.get("segments", []))

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the segment definition (PQL over XDM paths), or update it when its rule or description changed."""
        compile_pql(definition.rule, source.fields)  # a bad rule is an error before anything is stored
        existing = next((s for s in self._definitions() if s.get("name") == definition.name), None)
        record = self._upsert_definition(definition, existing)
        if self._audience_sources().get(record.id) != source.to_json():
            self.ingest(
                AUDIENCES,
                [
                    pd.DataFrame(
                        [{"id": record.id, "name": record.name, "source": source.to_json(), "updated": utc_now()}]
                    )
                ],
            )
            if record.change == "unchanged":
                record = AudienceRecord(record.id, record.name, record.rule, record.version, "updated")
        return record

    def _audience_sources(self) -> dict[str, str]:
        """The latest recorded profile source (JSON) of each audience id."""
        if not self.exists(AUDIENCES.name):
            return {}
        frame = self.query(f"SELECT id, source FROM {identifier(AUDIENCES.name)} ORDER BY updated")
        return dict(zip(frame["id"], frame["source"], strict=True))

    def _upsert_definition(self, definition: AudienceDefinition, existing: dict[str, Any] | None) -> AudienceRecord:
        """Create the segment definition, or update its expression and description when they changed."""
        expression = {"type": "PQL", "format": "pql/text", "value": definition.rule}
        if existing is None:
            body = {
                "name": definition.name,
                "profileInstanceId": "ups",
                "description": definition.description,
                "expression": expression,
                "evaluationInfo": {"batch": {"enabled": True}, "continuous": {"enabled": False}},
                "schema": {"name": "_xdm.context.profile"},
                "ttlInDays": 60,
            }
            created = self.client.post(f"{SEGMENTS}/segment/definitions", body)
            return AudienceRecord(created["id"], definition.name, definition.rule, 1, "created")
        version = int(existing.get("version") or 1)
        if (
            existing.get("expression", {}).get("value") == definition.rule
            and (existing.get("description") or "") == definition.description
        ):
            return AudienceRecord(existing["id"], definition.name, definition.rule, version, "unchanged")
        patch = [
            {"op": "replace", "path": "/expression", "value": expression},
            {"op": "replace", "path": "/description", "value": definition.description},
        ]
        updated = self.client.patch(f"{SEGMENTS}/segment/definitions/{existing['id']}", patch) or {}
        return AudienceRecord(
            existing["id"], definition.name, definition.rule, int(updated.get("version") or version + 1), "updated"
        )

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Run a segment job for the audience and wait for it; its member count comes from the job's metrics."""
        job = self.client.post(f"{SEGMENTS}/segment/jobs", [{"segmentId": audience_id}])
        done = self.client.poll(
            lambda: self.client.get(f"{SEGMENTS}/segment/jobs/{job['id']}"),
            lambda answer: answer.get("status") in JOB_DONE,
            f"segment job {job['id']}",
        )
        names = {s["id"]: s.get("name", s["id"]) for s in self._definitions()}
        record = _job_record(done, names)
        if record.status != "SUCCEEDED":
            raise AEPError(
                f"segment job {record.id} for audience {record.audience_name!r} {record.status}: {record.error}"
            )
        logger.info("Audience %s: %s members (segment job %s)", record.audience_name, f"{record.members:,}", record.id)
        return record

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The segment jobs, newest first; by default only each audience's latest successful one."""
        answer = self.client.get(f"{SEGMENTS}/segment/jobs", params={"limit": 100, "sort": "creationTime:desc"})
        names = {s["id"]: s.get("name", s["id"]) for s in self._definitions()}
        jobs = sorted(
            (_job_record(job, names) for job in answer.get("children", [])), key=lambda j: j.started, reverse=True
        )
        if not latest_only:
            return jobs
        latest: dict[str, AudienceJob] = {}
        for job in jobs:
            if job.status == "SUCCEEDED":
                latest.setdefault(job.audience_id, job)
        return list(latest.values())

    # -- activation ----------------------------------------------------------------------------

    def _attribute_paths(self, audience_id: str, attributes: list[str]) -> list[str]:
        """The XDM path of each activated attribute (a column of the audience's profile source)."""
        recorded = self._audience_sources().get(audience_id)
        if recorded is None:
            raise PlatformError(f"audience {audience_id} has no recorded profile source: upsert it first")
        source = ProfileSource.from_config(json.loads(recorded))
        by_column: dict[str, str] = {field.column: path for path, field in source.fields.items()}
        missing = [name for name in attributes if name not in by_column]
        if missing:
            raise PlatformError(f"attributes {missing} are not among the profile fields {sorted(by_column)}")
        return [by_column[name] for name in attributes]

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver each segment job's audience through a DLZ destination flow, then to the ``files`` destination.

        A job already delivered successfully to this destination is skipped unless ``force``.
        """
        if not isinstance(destination, FileDestination):
            raise PlatformError(
                f"destination {destination.name!r}: the aep backend activates only to file destinations (type: files)"
            )
        columns = [check_name(name, "attribute") for name in attributes]
        sent = {d.job_id for d in self.deliveries(destination.name) if d.status == "success"}
        names = {s["id"]: s.get("name", s["id"]) for s in self._definitions()}
        deliveries = []
        for job_id in job_ids:
            job = _job_record(self.client.get(f"{SEGMENTS}/segment/jobs/{job_id}"), names)
            if job.status != "SUCCEEDED":
                raise PlatformError(f"audience job {job_id} did not succeed ({job.status})")
            if job_id in sent and not force:
                logger.info(
                    "Audience %s (job %s) already delivered to %s: skipped", job.audience_name, job_id, destination.name
                )
                continue
            deliveries.append(self._deliver(job, destination, columns, self._attribute_paths(job.audience_id, columns)))
        return deliveries

    def _deliver(
        self, job: AudienceJob, destination: FileDestination, attributes: list[str], paths: list[str]
    ) -> Delivery:
        """One destination flow run for the job's audience, its CSV handed to the destination, recorded."""
        started, delivery_id = utc_now(), uuid.uuid4().hex
        folder = f"aep-propensity/activation/{destination.name}/{delivery_id}"
        source = self.client.post(
            f"{FLOWS}/sourceConnections",
            {
                "name": "aep-propensity profile store",
                "connectionSpec": {"id": PROFILE_STORE_SPEC, "version": "1.0"},
                "data": {"format": "CSV", "schema": None},
                "params": {},
            },
        )["id"]
        target = self._target_connection(
            f"aep-propensity {destination.name}", {"path": folder, "fileType": "csv", "compression": "NONE"}
        )
        selectors = {"segmentSelectors": {"selectors": []}, "profileSelectors": {"selectors": []}}
        flow = self._flow(
            f"aep-propensity activation {destination.name}",
            source,
            target,
            [{"name": "GeneralTransform", "params": selectors}],
        )
        patch = [
            {
                "op": "add",
                "path": "/transformations/0/params/segmentSelectors/selectors/-",
                "value": {
                    "type": "PLATFORM_SEGMENT",
                    "value": {
                        "id": job.audience_id,
                        "name": job.audience_name,
                        "filenameTemplate": "%DESTINATION_NAME%_%SEGMENT_ID%_%DATETIME(YYYYMMdd_HHmmss)%",
                        "exportMode": "DAILY_FULL_EXPORT",
                        "schedule": {
                            "frequency": "ONCE",
                            "triggerType": "SCHEDULED",
                            "startDate": started.date().isoformat(),
                        },
                    },
                },
            },
            *(
                {
                    "op": "add",
                    "path": "/transformations/0/params/profileSelectors/selectors/-",
                    "value": {"type": "JSON_PATH", "value": {"path": path}},
                }
                for path in paths
            ),
        ]
        self.client.patch(f"{FLOWS}/flows/{flow['id']}", patch, headers={"If-Match": flow["etag"]})
        self.client.post(
            ADHOC_RUN, {"activationInfo": {flow["id"]: [job.audience_id]}}, headers={"Accept": AUDIENCE_ADHOC_ACCEPT}
        )
        try:
            self._wait_for_run(flow["id"], f"activation of {job.audience_name}")
            result = destination.deliver(
                job.audience_name, job.audience_id, job.id, self._delivered_rows(folder, ["ecid", *attributes])
            )
        except Exception as exc:
            self._record(
                Delivery(
                    delivery_id,
                    job.id,
                    job.audience_name,
                    destination.name,
                    "failed",
                    0,
                    0,
                    0,
                    0,
                    started,
                    utc_now(),
                    None,
                    str(exc)[:2000],
                )
            )
            raise
        delivery = Delivery(
            delivery_id,
            job.id,
            job.audience_name,
            destination.name,
            "success",
            result.members,
            result.files,
            result.requests,
            result.bytes,
            started,
            utc_now(),
            result.location,
        )
        self._record(delivery)
        logger.info(
            "Delivered audience %s to %s: %s members", job.audience_name, destination.name, f"{result.members:,}"
        )
        return delivery

    def _delivered_rows(self, folder: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The rows of the CSV files the flow run wrote under ``folder``, with the flat column names."""
        dlz, root = self._dlz_filesystem()
        for path in sorted(dlz.glob(f"{root}/{folder}/*.csv")):
            with dlz.open(path, "rb") as handle:
                table = pacsv.read_csv(handle, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
            yield from table.rename_columns(columns).to_batches()

    def _record(self, delivery: Delivery) -> None:
        """Append one delivery to the backend's delivery ledger dataset."""
        self.ingest(DELIVERIES, [pd.DataFrame([asdict(delivery)])])

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The recorded deliveries, newest first, optionally to one destination."""
        if not self.exists(DELIVERIES.name):
            return []
        sql = f"SELECT * FROM {identifier(DELIVERIES.name)}"
        if destination is not None:
            sql += f" WHERE destination = {literal(destination)}"
        frame = self.query(sql + " ORDER BY started DESC")
        return [
            Delivery(**{k: (None if pd.isna(v) else v) for k, v in row.items()}) for row in frame.to_dict("records")
        ]


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
        _from_ms(batch.get("created")) or utc_now(),
        _from_ms(batch.get("completed")),
        errors,
    )


def _job_record(job: dict[str, Any], names: dict[str, str]) -> AudienceJob:
    """A port :class:`AudienceJob` from a segment job (its first segment)."""
    segment_id = job["segments"][0]["segmentId"]
    counter = job.get("metrics", {}).get("segmentedProfileCounter", {})
    errors = job.get("errors") or None
    return AudienceJob(
        str(job["id"]),
        segment_id,
        names.get(segment_id, segment_id),
        job.get("status", ""),
        int(counter.get(segment_id, 0)),
        _from_ms(job.get("creationTime")) or utc_now(),
        _from_ms(job.get("updateTime")) if job.get("status") in JOB_DONE else None,
        str(errors)[:2000] if errors else None,
    )
