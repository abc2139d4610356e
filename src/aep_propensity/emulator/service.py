"""The emulator's running state: configuration, store, local platform, faults and background work."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import Body, Depends, Request

from aep_propensity.platform.engines import PostgresEngine
from aep_propensity.platform.local import LocalPlatform

from .config import EmulatorConfig, check_faults
from .store import Store

logger = logging.getLogger(__name__)


def now_ms() -> int:
    """The current time in epoch milliseconds, as Catalog reports times."""
    return int(time.time() * 1000)


def iso_now() -> str:
    """The current UTC time as ISO-8601 with milliseconds and ``Z``, as Query Service reports times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


class Emulator:
    """What every route and background job shares."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store(config.dsn, config.schema)
        self.engine = PostgresEngine(config.dsn, schema=config.schema)
        self.platform = LocalPlatform(self.engine)
        self.faults: dict[str, Any] = dict(config.faults)
        self._calls = 0
        self.injected = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="emulator-job")
        config.dlz_root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Emulator({self.config!r})"

    def close(self) -> None:
        """Stop background work and close the store."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        """Run ``job(*args)`` in a background thread; its failures are logged, never raised."""

        def run() -> None:
            try:
                job(*args)
            except Exception:
                logger.exception("background job %s failed", getattr(job, "__name__", job))

        self._executor.submit(run)

    def set_faults(self, faults: Any) -> dict[str, Any]:
        """Replace the fault switches (and restart the call counter)."""
        checked = check_faults(faults)
        with self._lock:
            self.faults = checked
            self._calls = self.injected = 0
        return checked

    def count_call(self) -> int:
        """Count one platform call; returns its number since the faults were last set."""
        with self._lock:
            self._calls += 1
            return self._calls

    def count_injected(self) -> None:
        """Count one injected 429 or 500."""
        with self._lock:
            self.injected += 1

    @property
    def token_ttl(self) -> int:
        """Lifetime of new tokens in seconds (the ``token_ttl`` fault overrides the option)."""
        return int(self.faults.get("token_ttl", self.config.token_ttl))


def get_emulator(request: Request) -> Emulator:
    """The emulator behind the app (a FastAPI dependency)."""
    return request.app.state.emulator


def sandbox_of(request: Request) -> str:
    """The sandbox named by the request's ``x-sandbox-name`` header (``prod`` when absent)."""
    return getattr(request.state, "sandbox", "prod")


#: Route parameter types: the emulator, and a JSON body (object or any JSON value).
EmulatorDep = Annotated[Emulator, Depends(get_emulator)]
JsonObject = Annotated[dict[str, Any], Body()]
JsonBody = Annotated[Any, Body()]
