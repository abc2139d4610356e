"""The aep backend's pure helpers: run status, run errors, CSV columns by header, paging links, job
records of the project's audiences, and the client's retry policy."""

from __future__ import annotations

import pyarrow as pa
import pytest
from urllib3 import HTTPResponse

from aep_propensity.platform.aep import AEPError
from aep_propensity.platform.aep.audiences import _by_header, _job_record, _next_start
from aep_propensity.platform.aep.client import capped_retry
from aep_propensity.platform.aep.flows import _run_errors, _run_finished


def run(status: str | None, **summary: object) -> dict:
    """A Flow Service run with ``metrics.statusSummary``."""
    return {"id": "r1", "metrics": {"statusSummary": {"status": status, **summary}} if status else {}}


@pytest.mark.parametrize("status", ["inProgress", "pending", "queued", "PENDING", None])
def test_a_run_in_progress_is_not_finished(status: str | None) -> None:
    assert not _run_finished(run(status))
    assert not _run_finished(None)


@pytest.mark.parametrize("status", ["success", "failed", "cancelled", "partialSuccess", "timeout"])
def test_any_other_run_status_is_finished(status: str) -> None:
    assert _run_finished(run(status))


def test_run_errors_come_from_the_summary_and_the_activities() -> None:
    failed = run("failed", errors=[{"code": "CONNECTOR-2001-500", "message": "bucket gone"}])
    failed["activities"] = [{"statusSummary": {"errors": [{"message": "no files"}]}}]
    assert _run_errors(failed) == "CONNECTOR-2001-500: bucket gone; no files"
    assert _run_errors(run("cancelled")) == "no error given"


def test_activated_columns_are_found_by_header_not_position() -> None:
    table = pa.table({"email": ["a@x"], "_acme.userid": ["p1"], "_acme.propensity": [0.9]})
    picked = _by_header(table, ["ecid", "propensity"], ["_acme.userid", "_acme.propensity"], "f.csv")
    assert picked.to_pylist() == [{"ecid": "p1", "propensity": 0.9}]
    with pytest.raises(AEPError, match=r"activation file f.csv has no column loyalty.tier \(loyalty_tier\)"):
        _by_header(table, ["ecid", "loyalty_tier"], ["_acme.userid", "loyalty.tier"], "f.csv")


def test_the_next_page_of_a_segmentation_list() -> None:
    assert _next_start({"_page": {"next": "2"}}) == "2"
    assert _next_start({"_page": {}, "_links": {"next": {"href": "@/segment/jobs?start=5&limit=2"}}}) == "5"
    assert _next_start({"_page": {"next": None}, "_links": {"next": {}}}) is None


def test_a_job_record_takes_the_segment_of_interest_not_the_first() -> None:
    job = {
        "id": "j1",
        "status": "SUCCEEDED",
        "segments": [{"segmentId": "theirs"}, {"segmentId": "ours"}],
        "metrics": {"segmentedProfileCounter": {"theirs": 7, "ours": 2}},
        "creationTime": 1_700_000_000_000,
        "updateTime": 1_700_000_060_000,
    }
    record = _job_record(job, {"ours": "likely"})
    assert record is not None and (record.audience_id, record.audience_name, record.members) == ("ours", "likely", 2)
    assert _job_record(job, {"elsewhere": "x"}) is None


def test_the_retry_policy_never_retries_read_timeouts_and_caps_retry_after() -> None:
    retry = capped_retry(retries=5, backoff_factor=0.5, max_retry_after_seconds=120)
    assert (retry.total, retry.connect, retry.read, retry.status) == (5, 5, 0, 5)
    assert retry.get_retry_after(HTTPResponse(headers={"Retry-After": "3600"})) == 120
    assert retry.new(total=4).get_retry_after(HTTPResponse(headers={"Retry-After": "7"})) == 7
    assert retry.new(total=4).max_retry_after_seconds == 120
