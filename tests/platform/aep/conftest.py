"""A real AEP emulator for the aep backend's tests: a subprocess on a free loopback port, a fresh PG schema."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from aep_propensity.platform import make_platform
from aep_propensity.platform.aep import AEPPlatform
from tests.conftest import PG_DSN

SECRET = "emulator-secret-for-tests"


@dataclass(frozen=True)
class Emulator:
    """A running emulator: its root URL and data folder."""

    url: str
    data_dir: Path

    def set_faults(self, faults: dict) -> None:
        """Replace the emulator's fault switches (test-only endpoint)."""
        requests.post(f"{self.url}/emulator/faults", json=faults, timeout=10).raise_for_status()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def emulator(pg_schema: str, tmp_path: Path) -> Iterator[Emulator]:
    """Start ``aep-emulator`` for one test; stop it (by its own pid) afterwards."""
    port = free_port()
    data_dir = tmp_path / "emulator"
    command = [
        sys.executable,
        "-c",
        "from aep_propensity.emulator.cli import main; main()",
        "--port",
        str(port),
        "--dsn",
        PG_DSN,
        "--schema",
        pg_schema,
        "--data-dir",
        str(data_dir),
        "--client-secret",
        SECRET,
    ]
    log = (tmp_path / "emulator.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_EMULATOR_")}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/emulator/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start: {(tmp_path / 'emulator.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield Emulator(url, data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def aep_config(emulator: Emulator, **overrides) -> tuple[dict, dict]:
    """The catalog's platform block and credentials of the emulator environment, for ``emulator``."""
    config = {
        "backend": "aep",
        "query_dialect": "postgres",
        "flatten_paths": True,
        "sslmode": "prefer",
        "poll_interval_seconds": 0.1,
        "poll_timeout_seconds": 120,
        "timeout_seconds": 30,
        "retries": 4,
        "backoff_factor": 0.1,
        **overrides,
    }
    credentials = {
        "base_url": emulator.url,
        "ims_url": emulator.url,
        "client_id": "emulator-client",
        "client_secret": SECRET,
        "org_id": "EMULATOR@AdobeOrg",
        "sandbox": "prod",
    }
    return config, credentials


@pytest.fixture
def aep(emulator: Emulator) -> AEPPlatform:
    """The aep backend against the emulator."""
    platform = make_platform(*aep_config(emulator))
    assert isinstance(platform, AEPPlatform)
    return platform
