"""The client's retry policy."""

from __future__ import annotations

from urllib3 import HTTPResponse

from aep_propensity.platform.aep.client import capped_retry


def test_the_retry_policy_never_retries_read_timeouts_and_caps_retry_after() -> None:
    retry = capped_retry(retries=5, backoff_factor=0.5, max_retry_after_seconds=120)
    assert (retry.total, retry.connect, retry.read, retry.status) == (5, 5, 0, 5)
    assert retry.get_retry_after(HTTPResponse(headers={"Retry-After": "3600"})) == 120
    assert retry.new(total=4).get_retry_after(HTTPResponse(headers={"Retry-After": "7"})) == 7
    assert retry.new(total=4).max_retry_after_seconds == 120
