"""Paging as AEP pages each list: Segmentation definitions and jobs, Catalog's offsets."""

from __future__ import annotations

import math
import urllib.parse

import pytest
import requests

from .conftest import AEPClient
from .helpers import CATALOG, IMPORT, UPS, profile_dataset

pytestmark = pytest.mark.postgres

MANY = 105  # past the largest page AEP serves (100)


def definition(number: int) -> dict:
    """A small segment definition."""
    return {
        "name": f"paged {number}",
        "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": "pql/text", "value": f"_acme.propensity >= {number / 1000}"},
    }


def follow(client: AEPClient, url: str) -> dict:
    """GET an absolute next-page URL with the AEP headers."""
    assert url.startswith(client.url), url
    answer = requests.get(url, headers=client.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_segment_definitions_page(client: AEPClient) -> None:
    """105 definitions: a full page of 100 with a next link, then 5 with none; ``page`` counts pages from 0."""
    created = [client.ok("POST", UPS + "/segment/definitions", json=definition(n))["id"] for n in range(MANY)]
    first = client.ok("GET", UPS + "/segment/definitions", params={"limit": 100})
    assert len(first["segments"]) == 100
    page = first["page"]
    assert (page["totalCount"], page["totalPages"], page["pageSize"], page["limit"]) == (MANY, 2, 100, 100)
    assert urllib.parse.parse_qs(urllib.parse.urlparse(first["link"]["next"]).query)["start"] == ["100"]
    second = follow(client, first["link"]["next"])
    assert len(second["segments"]) == 5 and second["page"]["pageSize"] == 5 and second["link"]["next"] == ""
    assert [s["id"] for s in first["segments"] + second["segments"]] == created
    by_page = client.ok("GET", UPS + "/segment/definitions", params={"limit": 100, "page": 1})
    assert [s["id"] for s in by_page["segments"]] == created[100:]
    small = client.ok("GET", UPS + "/segment/definitions", params={"limit": 10, "start": 20})
    assert [s["id"] for s in small["segments"]] == created[20:30]
    assert small["page"]["totalPages"] == math.ceil(MANY / 10)
    assert client.call("GET", UPS + "/segment/definitions", params={"limit": 0}).status_code == 400


def test_segment_jobs_page(client: AEPClient) -> None:
    """Segment jobs, newest first: ``_page {totalCount, pageSize, next}`` and ``_links.next.href``."""
    segment = client.ok("POST", UPS + "/segment/definitions", json=definition(1))["id"]
    jobs = [client.ok("POST", UPS + "/segment/jobs", json=[{"segmentId": segment}])["id"] for _ in range(5)]
    first = client.ok("GET", UPS + "/segment/jobs", params={"limit": 2})
    assert [job["id"] for job in first["children"]] == jobs[::-1][:2]
    assert first["_page"] == {"totalCount": 5, "pageSize": 2, "next": "2"}
    seen = [job["id"] for job in first["children"]]
    answer = first
    while answer["_links"]["next"]:
        answer = follow(client, answer["_links"]["next"]["href"])
        seen += [job["id"] for job in answer["children"]]
    assert seen == jobs[::-1] and answer["_page"]["next"] == "" and answer["_links"] == {"next": {}}
    oldest = client.ok("GET", UPS + "/segment/jobs", params={"limit": 1, "sort": "creationTime:asc"})
    assert oldest["children"][0]["id"] == jobs[0]
    assert client.call("GET", UPS + "/segment/jobs", params={"limit": 0}).status_code == 400


def test_catalog_offsets(client: AEPClient) -> None:
    """Catalog: 20 by default, at most 100, ``start`` a zero-based offset, ``limit=0`` or 101 a 400."""
    _, dataset_id = profile_dataset(client, "Paged Batches", profile=False)
    body = {"datasetId": dataset_id, "inputFormat": {"format": "json"}}
    created = [client.ok("POST", IMPORT + "/batches", 201, json=body)["id"] for _ in range(MANY)]
    params = {"dataSet": dataset_id, "orderBy": "asc:created"}
    assert len(client.ok("GET", CATALOG + "/batches", params=params)) == 20
    first = client.ok("GET", CATALOG + "/batches", params={**params, "limit": 100})
    rest = client.ok("GET", CATALOG + "/batches", params={**params, "limit": 100, "start": 100})
    assert list(first) + list(rest) == created and len(rest) == 5
    middle = client.ok("GET", CATALOG + "/batches", params={**params, "limit": 3, "start": 50})
    assert list(middle) == created[50:53]
    for bad in ({"limit": 0}, {"limit": 101}, {"start": -1}):
        response = client.call("GET", CATALOG + "/batches", params={**params, **bad})
        assert response.status_code == 400 and response.json()["type"].endswith("CAT-1400-400")
