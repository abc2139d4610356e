"""Segmentation's pure helpers: paging links, and job records of the project's audiences."""

from __future__ import annotations

from aep_propensity.platform.aep.segmentation import _job_record, _next_start


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
