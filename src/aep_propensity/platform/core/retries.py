"""HTTP retries whose every wait is bounded by configuration, for every adapter that speaks HTTP."""

from __future__ import annotations

from typing import Any

from urllib3.util.retry import Retry


class CappedRetry(Retry):
    """urllib3's ``Retry`` whose ``Retry-After`` sleeps are capped at ``max_retry_after_seconds``.

    urllib3 honours ``Retry-After`` up to its own cap only (six hours, and configurable only in recent
    versions), so an answer asking for an hour would stall the caller for an hour.
    """

    def __init__(self, *args: Any, max_retry_after_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after_seconds = max_retry_after_seconds

    def get_retry_after(self, response: Any) -> float | None:
        """The server's ``Retry-After`` in seconds, at most ``max_retry_after_seconds``."""
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.max_retry_after_seconds)

    def new(self, **kw: Any) -> CappedRetry:
        """The next retry state (urllib3 makes one per attempt), keeping the cap."""
        return super().new(max_retry_after_seconds=self.max_retry_after_seconds, **kw)
