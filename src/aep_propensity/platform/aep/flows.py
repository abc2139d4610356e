"""The Flow Service helpers that the dataset export (:mod:`.exports`) and activation (:mod:`.destinations`)
share: the flow objects a run creates (deleted once it is over), the Data Landing Zone's target
connections, flows and filesystem, and the polling of a flow's runs to their final status.

Adobe's references: the Flow Service API
(https://developer.adobe.com/experience-platform-apis/references/flow-service/), exporting datasets
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/api/export-datasets) and the
Data Landing Zone destination
(https://experienceleague.adobe.com/en/docs/experience-platform/destinations/catalog/cloud-storage/data-landing-zone).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import fsspec

from .client import AEPClient, AEPError
from .contract import DLZ_CONNECTION_SPEC, DLZ_CREDENTIALS, DLZ_FLOW_SPEC, FLOWS, RUN_PENDING

logger = logging.getLogger(__name__)

#: A run's pending statuses: the contract's, and destinations.yaml's ``Waiting`` (its enum: Success,
#: Processing, Waiting, Failed; matched without case).
PENDING = RUN_PENDING | {"waiting"}


class FlowObjects:
    """The Flow Service objects (connections, flows) one export or activation creates. Leaving the ``with``
    block, whatever happened in it, deletes them, newest first (the flow before its connections), so no
    scheduled flow keeps re-running on AEP; a failed DELETE is logged, not raised."""

    def __init__(self, client: AEPClient) -> None:
        self.client = client
        self.created: list[tuple[str, str]] = []

    def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a ``sourceConnections``/``connections``/``targetConnections``/``flows`` object; its answer."""
        answer = self.client.post(f"{FLOWS}/{collection}", body)
        self.created.append((collection, str(answer["id"])))
        return answer

    def delete_all(self) -> None:
        """DELETE every created object, newest first (best effort: failures are logged)."""
        while self.created:
            collection, ident = self.created.pop()
            try:
                self.client.delete(f"{FLOWS}/{collection}/{ident}")
            except AEPError as exc:
                logger.warning("Could not delete %s %s (delete it on the platform): %s", collection, ident, exc)

    def __enter__(self) -> FlowObjects:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.delete_all()


def dlz_target_connection(objects: FlowObjects, name: str, params: dict[str, Any]) -> str:
    """A target connection (on a new base connection) in the Data Landing Zone with ``params`` (path,
    file type, compression); the DLZ needs no credentials."""
    spec = {"id": DLZ_CONNECTION_SPEC, "version": "1.0"}
    base = objects.create("connections", {"name": "aep-propensity DLZ", "auth": None, "connectionSpec": spec})
    body = {
        "name": name,
        "baseConnectionId": base["id"],
        "params": {"mode": "Server-to-server", **params},
        "connectionSpec": spec,
    }
    return objects.create("targetConnections", body)["id"]


def dlz_flow(
    objects: FlowObjects, name: str, source: str, target: str, transformations: list[dict[str, Any]]
) -> dict[str, Any]:
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
    return objects.create("flows", body)


def dlz_filesystem(client: AEPClient) -> tuple[fsspec.AbstractFileSystem, str]:
    """The Data Landing Zone destination container as a filesystem and its root folder."""
    credentials = client.get(DLZ_CREDENTIALS, params={"type": "dlz_destination"})
    uri = credentials["SASUri"]
    if uri.startswith("file://"):  # the emulator: a folder instead of an Azure SAS URI
        return fsspec.core.url_to_fs(uri)
    fs = fsspec.filesystem("abfs", account_name=credentials["storageAccountName"], sas_token=credentials["SASToken"])
    return fs, credentials["containerName"]


def wait_for_run(client: AEPClient, flow_id: str, what: str) -> dict[str, Any]:
    """Poll the flow's runs until its newest run is finished (any status but a pending one); only
    ``success`` is OK, any other outcome raises with the run's errors."""

    def newest() -> dict[str, Any] | None:
        items = client.get(f"{FLOWS}/runs", params={"property": f"flowId=={flow_id}"}).get("items", [])
        return max(items, key=lambda run: run.get("createdAt", 0)) if items else None

    run = client.poll(newest, run_finished, what)
    assert run is not None
    status = run_status(run)
    if status != "success":
        raise AEPError(f"{what}: flow run {run.get('id')} ended {status}: {run_errors(run)}")
    return run


def run_status(run: dict[str, Any] | None) -> str | None:
    """A flow run's ``metrics.statusSummary.status``, if it has one yet."""
    return (((run or {}).get("metrics") or {}).get("statusSummary") or {}).get("status")


def run_finished(run: dict[str, Any] | None) -> bool:
    """Whether a flow run is over: it has a status and that status is not a pending one."""
    status = run_status(run)
    return bool(status) and str(status).lower() not in PENDING


def run_errors(run: dict[str, Any]) -> str:
    """A flow run's errors (its status summary's and its activities'), as ``code: message`` text."""
    summaries = [(run.get("metrics") or {}).get("statusSummary") or {}]
    summaries += [activity.get("statusSummary") or {} for activity in run.get("activities") or []]
    errors = [error for summary in summaries for error in summary.get("errors") or []]
    texts = [
        ": ".join(str(part) for part in (error.get("code"), error.get("message")) if part)
        if isinstance(error, dict)
        else str(error)
        for error in errors
    ]
    return "; ".join(text for text in texts if text) or "no error given"
