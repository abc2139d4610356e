"""Activation destinations: files in cloud storage, or an HTTP endpoint (shared by every backend).

A destination receives one evaluated audience's members as record batches and delivers them;
the platform records each delivery in its ledger. On AEP the same roles are played by Flow
Service destination flows (cloud storage batch destinations, HTTP API destinations).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import requests
from requests.adapters import HTTPAdapter

from .port import DeliveryResult, Destination, check_path_name
from .retries import CappedRetry

logger = logging.getLogger(__name__)

#: How much of a receiver's answer an error quotes.
ANSWER_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class FileDestination:
    """A cloud-storage batch destination: one file per audience and delivery, with a manifest.

    Files are named as AEP's batch destinations name them,
    ``<destination>_<audience id>_<YYYYmmdd_HHMMSS>.<csv|parquet>`` under ``<path>/<audience>/`` (``-2``,
    ``-3``... after the time when deliveries of one second would share the name), and a
    ``.manifest.json`` beside each file (written last) lists it with its rows and bytes, and the delivery's
    key. An audience without members is a file with its columns only (a CSV's header row).
    """

    name: str
    path: str
    format: Literal["csv", "parquet"] = "csv"
    fs_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_path_name(self.name, "destination")

    def deliver(
        self, audience: str, audience_id: str, job_id: str, key: str, members: pa.RecordBatchReader
    ) -> DeliveryResult:
        """Write the members to one file under ``<path>/<audience>/``, then its manifest; nothing outside ``path``."""
        check_path_name(audience, "audience")
        check_path_name(audience_id, "audience id")
        fs, root = fsspec.core.url_to_fs(self.path.rstrip("/"), **self.fs_args)
        fs.makedirs(f"{root}/{audience}", exist_ok=True)
        stamp = f"{datetime.now(UTC):%Y%m%d_%H%M%S}"
        stem = _free_stem(fs, f"{root}/{audience}/{self.name}_{audience_id}_{stamp}", self.format)
        target = f"{stem}.{self.format}"
        rows = 0
        with fs.open(target, "wb") as sink:
            writer = (
                pq.ParquetWriter(sink, members.schema)
                if self.format == "parquet"
                else pacsv.CSVWriter(sink, members.schema)
            )
            for batch in members:
                writer.write_batch(batch)
                rows += batch.num_rows
            writer.close()
        size = fs.size(target)
        manifest = {
            "destination": self.name,
            "audience": audience,
            "audience_id": audience_id,
            "job_id": job_id,
            "delivery_key": key,
            "files": [{"name": target.rsplit("/", 1)[-1], "rows": rows, "bytes": size}],
            "created": datetime.now(UTC).isoformat(),
        }
        with fs.open(f"{stem}.manifest.json", "w") as handle:
            json.dump(manifest, handle, indent=2)
        return DeliveryResult(members=rows, files=1, bytes=size, location=fs.unstrip_protocol(target))


def _free_stem(fs: fsspec.AbstractFileSystem, stem: str, suffix: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... when a delivery of the same second already wrote
    ``<stem>.<suffix>``: a delivery never overwrites another's file or manifest."""
    candidate, n = stem, 1
    while fs.exists(f"{candidate}.{suffix}"):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


@dataclass(frozen=True)
class HttpDestination:
    """An HTTP API destination: members POSTed as JSON in batches, with timeouts and retries.

    Each request carries ``{"audience", "audience_id", "delivery_key", "batch", "members": [...]}`` and an
    ``Idempotency-Key`` header, ``<delivery key>-<first row>-<end row>``: a retried request, and a later
    delivery of the same audience version with the same members and attributes, repeat the very same
    requests, so a receiver can drop them. 429 and 5xx answers are retried with exponential backoff,
    honouring ``Retry-After``; no wait before a retry exceeds ``max_retry_wait_seconds``, and no request
    waits longer than ``timeout_seconds`` to connect or for an answer.
    """

    name: str
    url: str
    batch_size: int = 1_000
    timeout_seconds: float = 10.0
    retries: int = 3
    backoff_factor: float = 0.5
    max_retry_wait_seconds: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)

    def _session(self) -> requests.Session:
        """A session that retries transient failures of any method (POSTs carry an idempotency key)."""
        retry = CappedRetry(
            total=self.retries,
            backoff_factor=self.backoff_factor,
            backoff_max=self.max_retry_wait_seconds,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,
            respect_retry_after_header=True,
            raise_on_status=False,
            max_retry_after_seconds=self.max_retry_wait_seconds,
        )
        session = requests.Session()
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        return session

    def deliver(
        self, audience: str, audience_id: str, job_id: str, key: str, members: pa.RecordBatchReader
    ) -> DeliveryResult:
        """POST the members in batches of ``batch_size``; any batch still failing after retries raises."""
        rows = sent = size = 0
        with self._session() as session:
            for batch in _rebatch(members, self.batch_size):
                body = json.dumps(
                    {
                        "audience": audience,
                        "audience_id": audience_id,
                        "delivery_key": key,
                        "batch": sent,
                        "members": batch.to_pylist(),
                    },
                    default=str,
                ).encode()
                request_key = f"{key}-{rows}-{rows + batch.num_rows}"
                response = session.post(
                    self.url,
                    data=body,
                    timeout=self.timeout_seconds,
                    headers={"Content-Type": "application/json", "Idempotency-Key": request_key, **self.headers},
                )
                if response.status_code >= 400:
                    raise requests.HTTPError(
                        f"destination {self.name!r}: batch {sent} of audience {audience!r} failed with "
                        f"{_refusal(response, list(self.headers.values()))}",
                        response=response,
                    )
                rows, sent, size = rows + batch.num_rows, sent + 1, size + len(body)
        return DeliveryResult(members=rows, requests=sent, bytes=size, location=self.url)


def _refusal(response: requests.Response, secrets: list[str]) -> str:
    """What a receiver's refusal was: its HTTP status, whether the request was retried, and the start of its
    answer (``secrets`` masked)."""
    retried = _retries(response)
    tries = f"after {retried} retr{'y' if retried == 1 else 'ies'}" if retried else "(not retried)"
    return f"HTTP {response.status_code} {tries}: {_excerpt(response.text, secrets)}"


def _retries(response: requests.Response) -> int:
    """How many times urllib3 repeated the request that got ``response``."""
    retry = getattr(response.raw, "retries", None)
    return len(retry.history) if retry is not None else 0


def _excerpt(text: str, secrets: list[str]) -> str:
    """The start of ``text`` on one line, at most :data:`ANSWER_EXCERPT_CHARS`, with each of ``secrets`` and
    each of their words of eight characters or more (the token after ``Bearer``) masked as ``***``."""
    words = {word for secret in secrets for word in secret.split() if len(word) >= 8}
    for part in sorted({*filter(None, secrets), *words}, key=len, reverse=True):
        text = text.replace(part, "***")
    line = " ".join(text.split())
    if not line:
        return "(no body)"
    return line if len(line) <= ANSWER_EXCERPT_CHARS else line[:ANSWER_EXCERPT_CHARS] + "..."


def _rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterable[pa.Table]:
    """Regroup a stream of record batches into tables of exactly ``size`` rows (the last may be smaller)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def make_destination(config: dict[str, Any]) -> Destination:
    """A destination from catalog configuration ``{type: files|http, name, ...}``."""
    options = dict(config)
    kind = options.pop("type", None)
    if kind == "files":
        return FileDestination(**options)
    if kind == "http":
        return HttpDestination(**options)
    raise ValueError(f"unknown destination type {kind!r}; use 'files' or 'http'")
