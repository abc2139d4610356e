"""The AEP REST contract the ``aep`` backend speaks: API paths, page sizes, media types, connection and flow
spec ids, the statuses that end a batch, a query, a segment job or a flow run, and AEP's epoch-millisecond
times read. Adobe's API references: https://developer.adobe.com/experience-platform-apis/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SCHEMAS = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
QUERY = "/data/foundation/query"
FLOWS = "/data/foundation/flowservice"
SEGMENTS = "/data/core/ups"
ADHOC_RUN = "/data/core/activation/disflowprovider/adhocrun"
DLZ_CREDENTIALS = "/data/foundation/connectors/landingzone/credentials"
CATALOG_PAGE = 100  # the Catalog's largest page
SEGMENT_PAGE = 100

XED_JSON = "application/vnd.adobe.xed+json"
XED_ID_JSON = "application/vnd.adobe.xed-id+json"
XDM_V2_JSON = "application/vnd.adobe.xdm-v2+json"
DLZ_CONNECTION_SPEC = "10440537-2a7b-4583-ac39-ed38d4b848e8"
DLZ_FLOW_SPEC = "cd2fc47e-e838-4f38-a581-8fff2f99b63a"
DATASET_SOURCE_SPEC = "23598e46-f560-407b-88d5-ea6207e49db0"
PROFILE_STORE_SPEC = "8a9c3494-9708-43d7-ae3f-cda01e5030e1"
DATASET_ADHOC_ACCEPT = "application/vnd.adobe.adhoc.dataset.activation+json; version=1"
AUDIENCE_ADHOC_ACCEPT = "application/vnd.adobe.adhoc.activation+json; version=2"

BATCH_DONE = {"success", "active", "failed", "failure", "aborted", "abandoned", "inactive", "deleted"}
BATCH_OK = {"success", "active"}
#: The Catalog batch tag holding the id of the run (the platform session) that created the batch.
RUN_TAG = "aep_propensity/run"
QUERY_DONE = {"SUCCESS", "FAILED", "KILLED", "TIMEOUT"}
JOB_DONE = {"SUCCEEDED", "FAILED", "CANCELLED"}
#: Flow run statuses (lower-cased) of a run that is not over yet; any other status is final.
RUN_PENDING = {"inprogress", "in_progress", "pending", "queued", "scheduled", "started", "processing", "running"}


def from_ms(value: Any) -> datetime | None:
    """A naive UTC datetime from AEP's epoch milliseconds (None stays None)."""
    if value in (None, 0):
        return None
    return datetime.fromtimestamp(float(value) / 1000, UTC).replace(tzinfo=None)
