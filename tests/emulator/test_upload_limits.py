"""Batch Ingestion's bounds on the emulator, crossed cheaply by a raw client (the ``limits`` fault lowers
them): one PUT, one large-file part, a large file's declared size, files and bytes per batch; and a failed
or aborted batch's files gone from the emulator's data folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aep_propensity.emulator.cli import parse_args
from aep_propensity.emulator.config import LIMITS, check_faults
from tests.emulator_process import RunningEmulator

from .conftest import AEPClient
from .helpers import CATALOG, IMPORT, json_bytes, profile_dataset

pytestmark = pytest.mark.postgres

OCTET = {"Content-Type": "application/octet-stream"}
ROWS = json_bytes([{"_acme": {"userid": "u1", "propensity": 0.5}}])


@pytest.fixture(scope="module")
def dataset_id(client: AEPClient) -> str:
    """One plain dataset of the profile schema for every test here."""
    return profile_dataset(client, "Limits", profile=False)[1]


@pytest.fixture
def limits(emulator: RunningEmulator) -> Iterator[None]:
    """Small limits for one test (put 64 bytes, part 32, 3 files, 150 bytes per batch), then AEP's again."""
    emulator.set_faults({"limits": {"put_file_bytes": 64, "part_bytes": 32, "files_per_batch": 3, "batch_bytes": 150}})
    yield
    emulator.set_faults({})


def new_batch(client: AEPClient, dataset_id: str) -> str:
    """A batch of JSON files, loading; its id."""
    body = {"datasetId": dataset_id, "inputFormat": {"format": "json"}}
    return str(client.ok("POST", IMPORT + "/batches", 201, json=body)["id"])


def file_url(batch_id: str, dataset_id: str, name: str) -> str:
    """The path of one file of a batch."""
    return f"{IMPORT}/batches/{batch_id}/datasets/{dataset_id}/files/{name}"


def folder(emulator: RunningEmulator, batch_id: str) -> Path:
    """Where the emulator keeps a batch's uploaded files."""
    return emulator.data_dir / "batches" / batch_id


def assert_problem(response: requests.Response, status: int, code: str, words: str) -> None:
    """``response`` is Batch Ingestion's problem document with ``status``, ``code`` and ``words`` in its detail."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"].endswith(code) and words in body["detail"], body


@pytest.mark.usefixtures("limits")
def test_put_over_the_limit_is_413_and_leaves_no_file(
    client: AEPClient, emulator: RunningEmulator, dataset_id: str
) -> None:
    """A PUT body over ``put_file_bytes`` (declared by Content-Length, or streamed without one) is refused."""
    batch_id = new_batch(client, dataset_id)
    declared = client.call("PUT", file_url(batch_id, dataset_id, "big.json"), data=b"x" * 65, headers=OCTET)
    assert_problem(declared, 413, "INGEST-1413-413", "upload it in parts")
    streamed = client.call("PUT", file_url(batch_id, dataset_id, "big.json"), data=iter([b"x" * 40] * 2), headers=OCTET)
    assert_problem(streamed, 413, "INGEST-1413-413", "upload it in parts")
    assert not (folder(emulator, batch_id) / dataset_id / "big.json").exists()
    client.ok("PUT", file_url(batch_id, dataset_id, "ok.json"), 201, data=b"x" * 64, headers=OCTET)


@pytest.mark.usefixtures("limits")
def test_files_and_bytes_per_batch(client: AEPClient, dataset_id: str) -> None:
    """The fourth file of a batch is refused, a replaced file is not a new one, and bytes over
    ``batch_bytes`` are refused (a large file's by the size its first part declares)."""
    batch_id = new_batch(client, dataset_id)
    for index in range(3):
        client.ok("PUT", file_url(batch_id, dataset_id, f"f{index}.json"), 201, data=b"x" * 50, headers=OCTET)
    client.ok("PUT", file_url(batch_id, dataset_id, "f0.json"), 200, data=b"y" * 50, headers=OCTET)
    fourth = client.call("PUT", file_url(batch_id, dataset_id, "f3.json"), data=b"x", headers=OCTET)
    assert_problem(fourth, 400, "INGEST-1400-400", "already has 3 files")
    opened = client.call("POST", file_url(batch_id, dataset_id, "f3.json") + "?action=INITIALIZE")
    assert_problem(opened, 400, "INGEST-1400-400", "already has 3 files")

    other = new_batch(client, dataset_id)
    client.ok("PUT", file_url(other, dataset_id, "a.json"), 201, data=b"x" * 60, headers=OCTET)
    client.ok("PUT", file_url(other, dataset_id, "b.json"), 201, data=b"x" * 60, headers=OCTET)
    over = client.call("PUT", file_url(other, dataset_id, "c.json"), data=b"x" * 60, headers=OCTET)
    assert_problem(over, 400, "INGEST-1400-400", "would hold 180 bytes, more than 150")
    streamed = client.call("PUT", file_url(other, dataset_id, "c.json"), data=iter([b"x" * 30] * 2), headers=OCTET)
    assert_problem(streamed, 400, "INGEST-1400-400", "would hold 180 bytes, more than 150")
    client.ok("POST", file_url(other, dataset_id, "big.json") + "?action=INITIALIZE", 201)
    part = {**OCTET, "Content-Range": "bytes 0-9/100"}
    declared = client.call("PATCH", file_url(other, dataset_id, "big.json"), data=b"x" * 10, headers=part)
    assert_problem(declared, 400, "INGEST-1400-400", "would hold 220 bytes, more than 150")


@pytest.mark.usefixtures("limits")
def test_large_file_parts_within_the_declared_size(client: AEPClient, dataset_id: str) -> None:
    """Parts over ``part_bytes`` are 413; a Content-Range past the size it declares, past the size the first
    part declared, or giving another size is 400; a file completed short of its size is 400."""
    batch_id = new_batch(client, dataset_id)
    url = file_url(batch_id, dataset_id, "big.json")
    client.ok("POST", url + "?action=INITIALIZE", 201)

    def patch(data: bytes, content_range: str) -> requests.Response:
        return client.call("PATCH", url, data=data, headers={**OCTET, "Content-Range": content_range})

    assert_problem(patch(b"x" * 33, "bytes 0-32/40"), 413, "INGEST-1413-413", "over the 32 bytes a part takes")
    assert_problem(patch(b"x" * 10, "bytes 35-44/40"), 400, "INGEST-1400-400", "outside the file's declared size")
    assert patch(b"x" * 10, "bytes 0-9/40").status_code == 200
    assert_problem(patch(b"x" * 10, "bytes 10-19/50"), 400, "INGEST-1400-400", "declared 40 bytes")
    assert_problem(patch(b"x" * 10, "bytes 35-44"), 400, "INGEST-1400-400", "outside the file's 40 bytes")
    assert_problem(patch(b"x" * 3, "bytes 0-9/x"), 400, "INGEST-1400-400", "invalid Content-Range")
    assert_problem(client.call("POST", url + "?action=COMPLETE"), 400, "INGEST-1400-400", "has 10 of its declared 40")
    assert patch(b"x" * 30, "bytes 10-39/40").status_code == 200
    client.ok("POST", url + "?action=COMPLETE", 201)


@pytest.mark.parametrize("action", ["ABORT", "FAIL"])
def test_an_aborted_or_failed_batch_leaves_no_files(
    client: AEPClient, emulator: RunningEmulator, dataset_id: str, action: str
) -> None:
    """ABORT and FAIL remove the batch's uploaded files from the data folder."""
    batch_id = new_batch(client, dataset_id)
    client.ok("PUT", file_url(batch_id, dataset_id, "rows.json"), 201, data=ROWS, headers=OCTET)
    assert folder(emulator, batch_id).exists()
    client.ok("POST", f"{IMPORT}/batches/{batch_id}?action={action}")
    assert not folder(emulator, batch_id).exists()


def test_a_batch_failed_in_promotion_leaves_no_files(
    client: AEPClient, emulator: RunningEmulator, dataset_id: str
) -> None:
    """A batch whose promotion fails (a file that is not JSON) has its files removed too."""
    batch_id = new_batch(client, dataset_id)
    client.ok("PUT", file_url(batch_id, dataset_id, "rows.json"), 201, data=b"not json", headers=OCTET)
    client.ok("POST", f"{IMPORT}/batches/{batch_id}?action=COMPLETE")
    done = client.poll(f"{CATALOG}/batches/{batch_id}", lambda b: b[batch_id]["status"] != "staging")
    assert done[batch_id]["status"] == "failed"
    assert not folder(emulator, batch_id).exists()


def test_limits_option_and_fault_are_checked() -> None:
    """``--limits`` lowers AEP's defaults; an unknown or non-positive limit is an error, as an option or a fault."""
    config, _ = parse_args(["--limits", '{"files_per_batch": 2}'])
    assert config.limits == {**LIMITS, "files_per_batch": 2}
    assert parse_args([])[0].limits == LIMITS
    with pytest.raises(ValueError, match="unknown limits"):
        parse_args(["--limits", '{"rows": 2}'])
    with pytest.raises(ValueError, match="positive integers"):
        check_faults({"limits": {"batch_bytes": 0}})
