"""The Flow Service helpers: when a run is over, and its errors."""

from __future__ import annotations

import pytest

from aep_propensity.platform.aep.flows import run_errors, run_finished


def run(status: str | None, **summary: object) -> dict:
    """A Flow Service run with ``metrics.statusSummary``."""
    return {"id": "r1", "metrics": {"statusSummary": {"status": status, **summary}} if status else {}}


@pytest.mark.parametrize("status", ["inProgress", "pending", "queued", "PENDING", None])
def test_a_run_in_progress_is_not_finished(status: str | None) -> None:
    assert not run_finished(run(status))
    assert not run_finished(None)


@pytest.mark.parametrize("status", ["success", "failed", "cancelled", "partialSuccess", "timeout"])
def test_any_other_run_status_is_finished(status: str) -> None:
    assert run_finished(run(status))


def testrun_errors_come_from_the_summary_and_the_activities() -> None:
    failed = run("failed", errors=[{"code": "CONNECTOR-2001-500", "message": "bucket gone"}])
    failed["activities"] = [{"statusSummary": {"errors": [{"message": "no files"}]}}]
    assert run_errors(failed) == "CONNECTOR-2001-500: bucket gone; no files"
    assert run_errors(run("cancelled")) == "no error given"
