"""AEP's guardrails planned around by the aep backend, crossed cheaply with lowered limits: a batch's files
and bytes refused up front (and the emulator's own refusal when only it has the lower limit), the day's
profile-batch budget warned about, activation's attributes and audiences refused before any request."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aep_propensity.platform import make_platform, parse_platform_config
from aep_propensity.platform.aep import AEPError, AEPPlatform
from aep_propensity.platform.aep import ingestion as ingestion_module
from aep_propensity.platform.aep.contract import FLOWS
from aep_propensity.platform.aep.ingestion import BatchTooLarge
from aep_propensity.platform.core.destinations import FileDestination
from aep_propensity.platform.core.port import AudienceDefinition, Column, DatasetSpec, PlatformError
from tests.emulator_process import RunningEmulator

from .conftest import aep_config
from .test_platform import PROFILES, profiles_frame
from .test_platform_lifecycle import RULE, profile_source, scored_profiles

pytestmark = pytest.mark.postgres

PLAIN = DatasetSpec("plain_rows", (Column("ecid", "string"),))


def platform(emulator: RunningEmulator, **options: Any) -> AEPPlatform:
    """The aep backend against ``emulator`` with some options lowered."""
    made = make_platform(*aep_config(emulator, **options))
    assert isinstance(made, AEPPlatform)
    return made


def chunks(count: int) -> Iterator[pd.DataFrame]:
    """``count`` chunks of two profiles each, as a stream (no length known up front)."""
    for index in range(count):
        yield profiles_frame(2, offset=2 * index)


def statuses(aep: AEPPlatform) -> list[str]:
    """The statuses of the profiles dataset's batches."""
    return [record.status for record in aep.batches("profiles")]


def test_a_batch_of_too_many_files_is_refused_before_anything_is_sent(emulator: RunningEmulator) -> None:
    aep = platform(emulator, files_per_batch=2)
    with pytest.raises(BatchTooLarge, match="would hold 3 files: AEP takes at most 2 files"):
        aep.ingest(PROFILES, [profiles_frame(2), profiles_frame(2, 2), profiles_frame(2, 4)])
    assert statuses(aep) == []  # a sized collection: refused before the batch is created
    with pytest.raises(BatchTooLarge, match="would hold 3 files"):
        aep.ingest(PROFILES, chunks(3))  # a stream: refused before the third file, the batch aborted
    assert statuses(aep) == ["aborted"]
    assert aep.ingest(PROFILES, chunks(2)).files == 2


def test_a_batch_of_too_many_bytes_is_refused_before_the_file_that_crosses(emulator: RunningEmulator) -> None:
    aep = platform(emulator, batch_bytes=100)  # one chunk of two profiles is a few kB of Parquet
    with pytest.raises(BatchTooLarge, match=r"would hold 1 files of [\d,]+ bytes: .* and 100 bytes in one batch"):
        aep.ingest(PROFILES, chunks(2))
    assert statuses(aep) == ["aborted"]


def test_the_emulator_refuses_what_the_backend_would_have_sent(emulator: RunningEmulator) -> None:
    """With only the emulator's limit lowered, its 400 reaches the backend, which aborts the batch."""
    aep = platform(emulator)
    emulator.set_faults({"limits": {"files_per_batch": 1}})
    try:
        with pytest.raises(AEPError, match="INGEST-1400-400|already has 1 files"):
            aep.ingest(PROFILES, chunks(2))
    finally:
        emulator.set_faults({})
    assert statuses(aep) == ["aborted"]
    assert not any((emulator.data_dir / "batches").iterdir())  # the aborted batch's file is gone


def test_the_days_profile_batch_budget_is_warned_about(
    emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    aep = platform(emulator, profile_batches_per_day=2)
    caplog.set_level(logging.WARNING, logger="aep_propensity.platform.aep.ingestion")
    aep.ingest(PROFILES, [profiles_frame(2)])  # profile-enabled: 1 of 2
    aep.ingest(PLAIN, [pd.DataFrame({"ecid": ["p0"]})])  # not profile-enabled (as the ledger datasets): uncounted
    aep.ingest(PROFILES, [profiles_frame(2, 2)])  # 2 of 2
    assert "profile-enabled" not in caplog.text
    aep.ingest(PROFILES, [profiles_frame(2, 4)])  # 3 of 2
    assert "Batch 3 of the day into profile-enabled datasets (profiles): past AEP's guidance of 2" in caplog.text


def test_a_profile_upsert_batch_past_the_guidance_is_warned_about(
    emulator: RunningEmulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingestion_module, "PROFILE_UPSERT_ROWS", 3)  # AEP's 2 million, lowered to cross cheaply
    aep = platform(emulator)
    caplog.set_level(logging.WARNING, logger="aep_propensity.platform.aep.ingestion")
    aep.ingest(PLAIN, [pd.DataFrame({"ecid": ["p0", "p1", "p2", "p3"]})])  # not profile-enabled: no warning
    aep.ingest(PROFILES, [profiles_frame(3)])
    assert "upsert batches" not in caplog.text
    aep.ingest(PROFILES, [profiles_frame(2, 3), profiles_frame(2, 5)])
    assert "holds 4 records: Real-Time Customer Profile ingests upsert batches of more than 3" in caplog.text


def test_activation_refuses_too_many_attributes_before_any_request(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aep = platform(emulator, max_attributes=3)

    def no_request(*args: object, **kwargs: object) -> None:
        raise AssertionError("a request was made")

    monkeypatch.setattr(aep.client, "call", no_request)
    with pytest.raises(PlatformError, match="3 attributes and the identity: AEP maps at most 3 attributes"):
        aep.activate(["job"], FileDestination("files", str(tmp_path)), ["email", "gender", "state"])


def test_activation_refuses_too_many_audiences_before_any_flow(emulator: RunningEmulator, tmp_path: Path) -> None:
    aep = platform(emulator, max_audiences=1)
    scored_profiles(aep)
    jobs = [
        aep.evaluate_audience(aep.upsert_audience(AudienceDefinition(name, RULE, name), profile_source()).id).id
        for name in ("likely", "also_likely")
    ]
    flows_before = aep.client.get(f"{FLOWS}/flows")
    with pytest.raises(PlatformError, match="2 audiences to destination 'files': AEP maps at most 1 audiences"):
        aep.activate(jobs, FileDestination("files", str(tmp_path)), ["email"])
    assert aep.client.get(f"{FLOWS}/flows") == flows_before
    assert aep.deliveries() == []


def test_a_non_scalar_attribute_is_not_activated(aep: AEPPlatform, tmp_path: Path) -> None:
    """Only the profile source's scalar fields can be activated: anything else is refused by name."""
    scored_profiles(aep)
    record = aep.upsert_audience(AudienceDefinition("likely", RULE, "high"), profile_source())
    job = aep.evaluate_audience(record.id)
    with pytest.raises(PlatformError, match=r"attributes \['identity_map'\] are not among the profile fields"):
        aep.activate([job.id], FileDestination("files", str(tmp_path)), ["identity_map"])


def test_guardrail_options_default_to_aeps_and_a_put_stays_within_256_mib() -> None:
    config = parse_platform_config({"backend": "aep"})
    assert (config.files_per_batch, config.batch_bytes, config.profile_batches_per_day) == (25_000, 10**12, 90)
    assert (config.max_attributes, config.max_audiences, config.upload_file_bytes) == (50, 250, 256 * 1024**2)
    with pytest.raises(ValueError, match="platform.upload_file_bytes"):
        parse_platform_config({"backend": "aep", "upload_file_bytes": 256 * 1024**2 + 1})
