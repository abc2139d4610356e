"""The aep backend against a real emulator (tests/emulator_process.py), one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aep_propensity.platform import make_platform
from aep_propensity.platform.aep import AEPPlatform
from tests.emulator_process import CLIENT_ID, CLIENT_SECRET, ORG_ID, RunningEmulator, running_emulator


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A running emulator for one test."""
    with running_emulator(tmp_path / "emulator") as running:
        yield running


def aep_config(emulator: RunningEmulator, **overrides) -> tuple[dict, dict]:
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
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "org_id": ORG_ID,
        "sandbox": "prod",
    }
    return config, credentials


@pytest.fixture
def aep(emulator: RunningEmulator) -> AEPPlatform:
    """The aep backend against the emulator."""
    platform = make_platform(*aep_config(emulator))
    assert isinstance(platform, AEPPlatform)
    return platform
