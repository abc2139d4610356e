"""Activation: an activated file's columns found by header, and a repeat delivered under the same key."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from aep_propensity.platform.aep import AEPError, AEPPlatform
from aep_propensity.platform.aep.destinations import _by_header
from aep_propensity.platform.core.destinations import FileDestination
from aep_propensity.platform.core.port import AudienceDefinition

from .test_platform import SCORES, scores_frame
from .test_platform_lifecycle import RULE, profile_source, scored_profiles


def test_activated_columns_are_found_by_header_not_position() -> None:
    table = pa.table({"email": ["a@x"], "_acme.userid": ["p1"], "_acme.propensity": [0.9]})
    picked = _by_header(table, ["ecid", "propensity"], ["_acme.userid", "_acme.propensity"], "f.csv")
    assert picked.to_pylist() == [{"ecid": "p1", "propensity": 0.9}]
    with pytest.raises(AEPError, match=r"activation file f.csv has no column loyalty.tier \(loyalty_tier\)"):
        _by_header(table, ["ecid", "loyalty_tier"], ["_acme.userid", "loyalty.tier"], "f.csv")


def delivered_key(aep: AEPPlatform, job_id: str, folder: Path) -> str:
    """Activate ``job_id`` (email) to a file destination under ``folder``; the key in its manifest."""
    aep.activate([job_id], FileDestination("files", str(folder)), ["email"])
    [manifest] = (folder / "likely").glob("*.manifest.json")
    return json.loads(manifest.read_text())["delivery_key"]


@pytest.mark.postgres
def test_a_repeated_activation_of_the_same_members_carries_the_same_key(aep: AEPPlatform, tmp_path: Path) -> None:
    scored_profiles(aep)  # p0 and p1 score high
    record = aep.upsert_audience(AudienceDefinition("likely", RULE, "high scores"), profile_source())
    first = delivered_key(aep, aep.evaluate_audience(record.id).id, tmp_path / "first")
    again = delivered_key(aep, aep.evaluate_audience(record.id).id, tmp_path / "again")  # a new segment job
    assert again == first
    aep.ingest(SCORES, [scores_frame("run-b", ["p0", "p1", "p2"], 0.9, datetime(2026, 10, 2))])  # p2 joins
    aep.ingest(SCORES, [scores_frame("run-b", ["p3", "p4", "p5"], 0.1, datetime(2026, 10, 2))])
    job = aep.evaluate_audience(record.id)
    assert job.members == 3 and delivered_key(aep, job.id, tmp_path / "changed") != first
