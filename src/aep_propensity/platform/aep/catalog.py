"""Catalog (``/data/foundation/catalog``): datasets and batches, as AEP records them.

The Catalog answers id-keyed objects (``{"<id>": {...}}``); its lists are read in pages of at most 100
with a zero-based ``start`` offset. The backend's XDM datasets are named ``<flat name>_xdm``, each with
its Query Service table in the ``adobe/pqs/table`` tag; the port's batch records of those datasets are
read from here.

Adobe's references: the Catalog Service API guide
(https://experienceleague.adobe.com/en/docs/experience-platform/catalog/api/getting-started), creating
a dataset (https://experienceleague.adobe.com/en/docs/experience-platform/catalog/api/create-dataset)
and filtering and paging Catalog lists
(https://experienceleague.adobe.com/en/docs/experience-platform/catalog/api/filter-data).
"""

from __future__ import annotations

from typing import Any

from ..core.port import BatchRecord, check_name, utc_now
from .client import AEPClient, AEPError
from .contract import BATCH_OK, CATALOG, CATALOG_PAGE, RUN_TAG, XED_JSON, from_ms

XDM_SUFFIX = "_xdm"


def only_item(items: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one ``(id, object)`` of the Catalog's id-keyed answer."""
    if not items:
        raise AEPError("AEP answered an empty object where one was expected")
    key = next(iter(items))
    return key, items[key]


def batch_errors(batch: dict[str, Any]) -> str | None:
    """A Catalog batch's errors as ``code: description`` text, or None when it has none."""
    return "; ".join(f"{e.get('code')}: {e.get('description')}" for e in batch.get("errors", [])) or None


class Catalog:
    """Datasets (found by name, created for a schema) and batches (one, a dataset's, the port's records)."""

    def __init__(self, client: AEPClient) -> None:
        self.client = client

    def find_dataset(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """The dataset named ``name`` (id and object), if any."""
        answer = self.client.get(f"{CATALOG}/dataSets", params={"name": name, "limit": 100})
        return next(((key, item) for key, item in answer.items() if item.get("name") == name), None)

    def xdm_dataset(self, dataset: str, schema_id: str, profile_enabled: bool) -> tuple[str, str]:
        """The id and Query Service table of the XDM dataset ``<dataset>_xdm`` of ``schema_id``, created if
        missing (enabled for Profile and Identity when ``profile_enabled``)."""
        name = f"{dataset}{XDM_SUFFIX}"
        found = self.find_dataset(name)
        if found is None:
            tags = {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]} if profile_enabled else {}
            body = {
                "name": name,
                "schemaRef": {"id": schema_id, "contentType": f"{XED_JSON};version=1"},
                "fileDescription": {"persisted": True, "containerFormat": "parquet", "format": "parquet"},
                "tags": tags,
            }
            dataset_id = self.client.post(f"{CATALOG}/dataSets", body, params={"requestDataSource": "true"})[0]
            found = only_item(self.client.get(f"{CATALOG}/dataSets/{dataset_id.rsplit('/', 1)[-1]}"))
        dataset_id, item = found
        if item.get("schemaRef", {}).get("id") != schema_id:
            raise AEPError(
                f"dataset {name!r} exists with another schema than its flat columns map to; delete it to re-create it"
            )
        table = (item.get("tags", {}).get("adobe/pqs/table") or [None])[0]
        if not table:
            raise AEPError(f"dataset {name!r} has no Query Service table tag (adobe/pqs/table)")
        return dataset_id, check_name(table)

    def batch(self, batch_id: str) -> dict[str, Any]:
        """The Catalog object of one batch."""
        return only_item(self.client.get(f"{CATALOG}/batches/{batch_id}"))[1]

    def dataset_batches(self, dataset_id: str) -> dict[str, dict[str, Any]]:
        """Every batch of a dataset, id-keyed, newest first."""
        return self._list("batches", {"dataSet": dataset_id, "orderBy": "desc:created"})

    def successful_batches(self, dataset_id: str) -> list[str]:
        """The ids of the dataset's batches that are visible now (``success``/``active``)."""
        return [key for key, batch in self.dataset_batches(dataset_id).items() if batch.get("status") in BATCH_OK]

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The batches of the backend's datasets as port records, newest first, optionally of one flat dataset."""
        if dataset is not None:
            found = self.find_dataset(f"{check_name(dataset)}{XDM_SUFFIX}")
            names = {found[0]: dataset} if found else {}
        else:
            names = {
                key: item["name"][: -len(XDM_SUFFIX)]
                for key, item in self._list("dataSets", {"properties": "name"}).items()
                if str(item.get("name", "")).endswith(XDM_SUFFIX)
            }
        records = [
            _batch_record(batch_id, names[dataset_id], batch)
            for dataset_id in names
            for batch_id, batch in self.dataset_batches(dataset_id).items()
        ]
        return sorted(records, key=lambda record: record.created, reverse=True)

    def _list(self, collection: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Every object of a Catalog list (``dataSets``, ``batches``), id-keyed, read in pages of
        ``CATALOG_PAGE`` with a zero-based ``start`` offset."""
        items: dict[str, dict[str, Any]] = {}
        while True:
            page = self.client.get(
                f"{CATALOG}/{collection}", params={**params, "limit": CATALOG_PAGE, "start": len(items)}
            )
            known = len(items)
            items.update(page)
            if len(page) < CATALOG_PAGE or len(items) == known:
                return items


def _batch_record(batch_id: str, dataset: str, batch: dict[str, Any]) -> BatchRecord:
    """A port :class:`BatchRecord` from a Catalog batch."""
    metrics = batch.get("metrics", {})
    return BatchRecord(
        batch_id,
        dataset,
        batch.get("status", ""),
        int(metrics.get("outputRecordCount", metrics.get("outputRecordSize", 0)) or 0),
        int(metrics.get("inputFileCount", 0) or 0),
        from_ms(batch.get("created")) or utc_now(),
        from_ms(batch.get("completed")),
        batch_errors(batch),
        next(iter((batch.get("tags") or {}).get(RUN_TAG, [])), None),
    )
