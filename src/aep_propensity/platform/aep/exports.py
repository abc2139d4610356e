"""Dataset export to the Data Landing Zone through the Flow Service, copied into the port's layout.

An export is a dataset export flow (a source connection on the dataset, a Data Landing Zone target
connection on its base connection, a flow) and one ad-hoc run of it, polled through the Flow Service
runs until its status is no longer a pending one; only ``success`` is OK. The flow and its
connections are deleted once the run is over, whatever its outcome (best effort, logged), so no
scheduled flow keeps running. The run's Parquet files are then copied with fsspec into
``<location>/<table>/exportTime=YYYYmmddHHMMSS/part-<n>.parquet`` (staged, then moved into place).
Only datasets can be exported: a CTAS table is one, a view is not.

Adobe's references: exporting datasets
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/api/export-datasets) and
the ad-hoc activation API
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/api/ad-hoc-activation-api).
"""

from __future__ import annotations

import logging
import shutil
import uuid

import fsspec
import pyarrow.parquet as pq

from ..core.exports import free_export_time
from ..core.port import ExportRecord, check_name
from .catalog import Catalog
from .client import AEPClient, AEPError
from .contract import ADHOC_RUN, DATASET_ADHOC_ACCEPT, DATASET_SOURCE_SPEC
from .flows import FlowObjects, dlz_filesystem, dlz_flow, dlz_target_connection, wait_for_run

logger = logging.getLogger(__name__)

COPY_BUFFER_BYTES = 16 * 1024 * 1024


class DatasetExport:
    """Datasets exported by ad-hoc dataset export runs, their files copied to a location."""

    def __init__(self, client: AEPClient, catalog: Catalog) -> None:
        self.client = client
        self.catalog = catalog

    def export(self, table: str, location: str) -> ExportRecord:
        """Export ``table``'s dataset to the DLZ by an ad-hoc dataset export run; copy its files to ``location``."""
        check_name(table)
        found = self.catalog.find_dataset(table)
        if found is None:
            raise AEPError(f"no dataset for table {table!r}: only datasets (CTAS tables) can be exported")
        dataset_id = found[0]
        folder = f"aep-propensity/{table}"
        name = f"aep-propensity export {table}"
        with FlowObjects(self.client) as objects:
            source = objects.create(
                "sourceConnections",
                {
                    "name": name,
                    "connectionSpec": {"id": DATASET_SOURCE_SPEC, "version": "1.0"},
                    "params": {"datasets": [dataset_id]},
                },
            )["id"]
            target = dlz_target_connection(
                objects, name, {"path": folder, "datasetFileType": "PARQUET", "compression": "NONE"}
            )
            flow = dlz_flow(objects, name, source, target, [])
            self.client.post(
                ADHOC_RUN,
                {"activationInfo": {"destinations": [{"flowId": flow["id"], "datasets": [{"id": dataset_id}]}]}},
                headers={"Accept": DATASET_ADHOC_ACCEPT},
            )
            run = wait_for_run(self.client, flow["id"], f"export of {table}")
        dlz, root = dlz_filesystem(self.client)
        exports = sorted(dlz.glob(f"{root}/{folder}/{dataset_id}/exportTime=*"))
        if not exports:
            raise AEPError(f"export of {table}: run {run.get('id')} left no files in the Data Landing Zone")
        return self._copy(table, dlz, exports[-1], location, run.get("id") or uuid.uuid4().hex)

    def _copy(
        self, table: str, dlz: fsspec.AbstractFileSystem, source: str, location: str, export_id: str
    ) -> ExportRecord:
        """Copy one DLZ export folder's parts to ``location/<table>/exportTime=<now>/`` (staged, then moved)."""
        fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
        export_time = free_export_time(fs, f"{root}/{table}")
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
