"""Local activation against a real loopback receiver: bounded waits, honest errors, empty audiences, stable keys."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from aep_propensity.platform import AudienceDefinition, Column, DatasetSpec, Field, ProfileSource
from aep_propensity.platform.core.destinations import FileDestination, HttpDestination
from aep_propensity.platform.local import LocalPlatform
from tests.conftest import loopback_receiver

PEOPLE = DatasetSpec("people", (Column("ecid", "string"), Column("score", "float64")), identity="ecid")
SOURCE = ProfileSource("people", {"_acme.score": Field("score", "number")})
SECRET = "Bearer s3cret-token"


class Receiver(BaseHTTPRequestHandler):
    """A loopback audience endpoint answering every POST with ``status`` (and ``retry_after``, ``body``);
    it keeps each request's idempotency key and body. ``{auth}`` in ``body`` echoes the Authorization header."""

    status = 200
    retry_after: str | None = None
    body = ""
    requests: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.headers["Idempotency-Key"], payload))
        answer = self.body.replace("{auth}", self.headers.get("Authorization", "")).encode()
        self.send_response(self.status)
        if self.retry_after is not None:
            self.send_header("Retry-After", self.retry_after)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[str]:
    """The endpoint on a free loopback port, answering 200 until a test says otherwise."""
    Receiver.status, Receiver.retry_after, Receiver.body, Receiver.requests = 200, None, "", []
    with loopback_receiver(Receiver) as url:
        yield url


def people(scores: list[float]) -> pd.DataFrame:
    """People ``p0..`` with the given scores."""
    return pd.DataFrame({"ecid": [f"p{i}" for i in range(len(scores))], "score": scores})


def evaluated(platform: LocalPlatform, rule: str = "_acme.score >= 0.5") -> str:
    """Upsert the audience ``likely`` with ``rule``, evaluate it now; the job's id."""
    record = platform.upsert_audience(AudienceDefinition("likely", rule), SOURCE)
    return platform.evaluate_audience(record.id).id


@pytest.fixture
def scored(platform: LocalPlatform) -> LocalPlatform:
    """A platform with six people, three of them (p0, p2, p4) scoring at least 0.5."""
    platform.ingest(PEOPLE, [people([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])])
    return platform


def test_a_long_retry_after_is_capped_and_the_delivery_recorded_failed(scored, receiver):
    Receiver.status, Receiver.retry_after = 429, "3600"
    destination = HttpDestination("hook", receiver, retries=2, backoff_factor=0, max_retry_wait_seconds=0.2)
    start = time.monotonic()
    with pytest.raises(requests.HTTPError, match=r"failed with HTTP 429 after 2 retries"):
        scored.activate([evaluated(scored)], destination, ["score"])
    assert time.monotonic() - start < 5
    assert len(Receiver.requests) == 3  # the first try and two retries, each wait cut to 0.2 s
    [delivery] = scored.deliveries("hook")
    assert delivery.status == "failed" and delivery.completed is not None and "HTTP 429" in delivery.error


def test_an_interrupted_delivery_is_recorded_failed(scored):
    class Interrupted:
        name = "hook"

        def deliver(self, *args):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scored.activate([evaluated(scored)], Interrupted(), [])
    [delivery] = scored.deliveries("hook")
    assert delivery.status == "failed" and "KeyboardInterrupt" in delivery.error


def test_an_error_answer_says_whether_it_was_retried_and_what_the_receiver_said(scored, receiver):
    Receiver.status, Receiver.body = 400, '{"error": "member p0 is malformed", "saw": "{auth}"}' + " x" * 2000
    destination = HttpDestination("hook", receiver, retries=3, headers={"Authorization": SECRET})
    with pytest.raises(requests.HTTPError) as caught:
        scored.activate([evaluated(scored)], destination, ["score"])
    message = str(caught.value)
    assert "failed with HTTP 400 (not retried)" in message and "member p0 is malformed" in message
    assert SECRET not in message and "s3cret" not in message and len(message) < 1_000
    assert len(Receiver.requests) == 1
    Receiver.status, Receiver.body = 503, "busy"
    destination = HttpDestination("hook", receiver, retries=2, backoff_factor=0, headers={"Authorization": SECRET})
    with pytest.raises(requests.HTTPError, match=r"failed with HTTP 503 after 2 retries: busy"):
        scored.activate([evaluated(scored)], destination, ["score"])


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_an_empty_audience_is_a_file_with_its_columns(scored, tmp_path, file_format):
    destination = FileDestination("cloud_storage", str(tmp_path / "out"), file_format)
    [delivery] = scored.activate([evaluated(scored, "_acme.score >= 2")], destination, ["score"])
    [written] = (tmp_path / "out" / "likely").glob(f"*.{file_format}")
    assert delivery.members == 0
    if file_format == "csv":
        assert written.read_text() == '"ecid","score"\n'
    else:
        assert pq.read_table(written).schema.names == ["ecid", "score"]


def test_a_repeated_delivery_of_the_same_members_carries_the_same_keys(scored, receiver, tmp_path):
    destination = HttpDestination("hook", receiver, batch_size=2)
    scored.activate([evaluated(scored)], destination, ["score"])
    first = list(Receiver.requests)
    Receiver.requests.clear()
    scored.activate([evaluated(scored)], destination, ["score"])  # a new job, the same members
    assert Receiver.requests == first and len(first) == 2  # the very same requests: a receiver sees a repeat
    Receiver.requests.clear()
    scored.ingest(PEOPLE, [people([0.9, 0.1, 0.8, 0.2, 0.7, 0.6])], replace=True)  # p5 joins
    scored.activate([evaluated(scored)], destination, ["score"])
    assert {key for key, _ in Receiver.requests}.isdisjoint(key for key, _ in first)
    files = FileDestination("cloud_storage", str(tmp_path / "out"))
    job = evaluated(scored)
    scored.activate([job], files, ["score"])
    [manifest] = (tmp_path / "out" / "likely").glob("*.manifest.json")
    assert json.loads(manifest.read_text())["delivery_key"] == Receiver.requests[0][0].split("-")[0]
