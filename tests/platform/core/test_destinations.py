"""Destinations: names that become paths are checked where they enter (nothing is written outside a
destination's root), an empty audience keeps its columns, Retry-After is capped, errors quote receivers
safely, and delivery keys depend on what is delivered only."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from urllib3 import HTTPResponse

from aep_propensity.platform import AudienceDefinition
from aep_propensity.platform.core.destinations import ANSWER_EXCERPT_CHARS, FileDestination, _excerpt
from aep_propensity.platform.core.port import delivery_key
from aep_propensity.platform.core.retries import CappedRetry

HOSTILE = ["../../../../tmp/x", "a/b", "..", "", " high", "high\x00", "high\n", "x" * 101, "/etc/passwd"]


@pytest.mark.parametrize("name", HOSTILE)
def test_an_audience_name_that_is_not_one_folder_name_is_refused(name):
    with pytest.raises(ValueError, match="invalid audience name"):
        AudienceDefinition(name, "_acme.propensity > 0.5")


@pytest.mark.parametrize("name", HOSTILE)
def test_a_file_destination_writes_nothing_outside_its_root(name, tmp_path):
    destination = FileDestination("cloud_storage", str(tmp_path / "root"))
    with pytest.raises(ValueError, match="invalid audience name"):
        destination.deliver(name, "a" * 32, "b" * 32, "k" * 32, reader({"ecid": ["e1"]}))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    with pytest.raises(ValueError, match="invalid destination name"):
        FileDestination("../up", str(tmp_path / "root"))


def test_ordinary_names_deliver_under_the_root(tmp_path):
    destination = FileDestination("cloud_storage", str(tmp_path / "root"))
    result = destination.deliver("moderate_to_high", "a" * 32, "b" * 32, "k" * 32, reader({"ecid": ["e1"]}))
    assert result.members == 1 and (tmp_path / "root" / "moderate_to_high").is_dir()
    [manifest] = (tmp_path / "root" / "moderate_to_high").glob("*.manifest.json")
    assert json.loads(manifest.read_text())["delivery_key"] == "k" * 32


def test_deliveries_within_one_second_each_keep_their_own_file_and_manifest(tmp_path):
    destination = FileDestination("cloud_storage", str(tmp_path))
    for n in range(3):  # milliseconds apart: the same second's name, at least twice
        destination.deliver("high", "a" * 32, f"job{n}", f"key{n}", reader({"ecid": [f"e{n}"]}))
    manifests = [json.loads(m.read_text()) for m in (tmp_path / "high").glob("*.manifest.json")]
    assert sorted(m["delivery_key"] for m in manifests) == ["key0", "key1", "key2"]
    files = sorted(f.name for f in (tmp_path / "high").glob("*.csv"))
    assert len(files) == 3 and sorted(m["files"][0]["name"] for m in manifests) == files


def reader(*batches: dict, schema: pa.Schema | None = None) -> pa.RecordBatchReader:
    """A reader of record batches made from column dicts (``schema`` when there are none)."""
    made = [pa.record_batch(batch) for batch in batches]
    return pa.RecordBatchReader.from_batches(schema or made[0].schema, made)


def test_an_audience_without_members_is_a_csv_with_its_header(tmp_path):
    destination = FileDestination("cloud_storage", str(tmp_path))
    empty = reader(schema=pa.schema([("ecid", pa.string()), ("propensity", pa.float64())]))
    result = destination.deliver("nobody", "a" * 32, "b" * 32, "k" * 32, empty)
    [written] = (tmp_path / "nobody").glob("*.csv")
    assert result.members == 0 and written.read_text() == '"ecid","propensity"\n'


def test_retry_after_is_capped_on_every_retry():
    retry = CappedRetry(total=3, max_retry_after_seconds=2.5)
    answer = HTTPResponse(status=429, headers={"Retry-After": "3600"})
    assert retry.get_retry_after(answer) == 2.5
    assert retry.increment("POST", "/x", answer).get_retry_after(answer) == 2.5  # the next state keeps the cap
    assert retry.get_retry_after(HTTPResponse(status=429, headers={"Retry-After": "1"})) == 1


def test_a_receivers_answer_is_quoted_on_one_line_bounded_and_without_secrets():
    secrets = ["Bearer s3cret-token-value", "apikey-1234"]
    text = "bad\n  token s3cret-token-value in Bearer s3cret-token-value; key apikey-1234" + " pad" * 500
    quoted = _excerpt(text, secrets)
    assert quoted.startswith("bad token *** in ***; key *** pad") and "s3cret" not in quoted
    assert len(quoted) == ANSWER_EXCERPT_CHARS + 3 and quoted.endswith("...")
    assert _excerpt("  \n", secrets) == "(no body)"


def test_a_delivery_key_depends_on_the_audience_version_and_what_is_delivered_only():
    rows = {"ecid": ["p0", "p2", "p4"], "score": [0.9, 0.8, 0.7]}
    key = delivery_key("a" * 32, 1, reader(rows))
    assert len(key) == 32
    assert (
        delivery_key("a" * 32, 1, reader({"ecid": ["p0"], "score": [0.9]}, {"ecid": ["p2", "p4"], "score": [0.8, 0.7]}))
        == key
    )
    changed = [
        delivery_key("b" * 32, 1, reader(rows)),
        delivery_key("a" * 32, 2, reader(rows)),
        delivery_key("a" * 32, 1, reader({"ecid": ["p0", "p2", "p5"], "score": [0.9, 0.8, 0.7]})),
        delivery_key("a" * 32, 1, reader({"ecid": ["p0", "p2", "p4"], "score": [0.9, 0.8, 0.6]})),
        delivery_key("a" * 32, 1, reader({"ecid": ["p0", "p2", "p4"], "tier": [0.9, 0.8, 0.7]})),
        delivery_key("a" * 32, 1, reader({"ecid": ["p0", "p2", "p4"]})),
    ]
    assert len({key, *changed}) == len(changed) + 1
