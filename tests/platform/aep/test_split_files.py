"""Exported files split at the emulator's ``rows_per_file`` (lowered to 4 by the ``limits`` fault): the aep
backend reads every part of a dataset export and of an activation, each row once."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from aep_propensity.platform.aep import AEPPlatform
from aep_propensity.platform.core.destinations import FileDestination
from aep_propensity.platform.core.port import AudienceDefinition
from tests.emulator_process import RunningEmulator

from .test_platform import EVENTS, events_frame
from .test_platform_lifecycle import profile_source, scored_profiles

pytestmark = pytest.mark.postgres


@pytest.fixture
def four_rows_per_file(emulator: RunningEmulator) -> None:
    """The emulator writes at most 4 rows per exported file."""
    emulator.set_faults({"limits": {"rows_per_file": 4}})


def dlz_files(emulator: RunningEmulator, pattern: str) -> list[Path]:
    """The emulator's Data Landing Zone files matching ``pattern``."""
    return sorted((emulator.data_dir / "dlz").rglob(pattern))


@pytest.mark.usefixtures("four_rows_per_file")
def test_a_dataset_export_in_parts_arrives_whole(aep: AEPPlatform, emulator: RunningEmulator, tmp_path: Path) -> None:
    aep.ingest(EVENTS, [events_frame(40)])
    aep.create_table_as(
        "event_counts", 'SELECT ecid, "eventType", count(*) AS events FROM experience_events GROUP BY 1, 2'
    )
    record = aep.export("event_counts", str(tmp_path / "egress"))
    assert [pq.read_metadata(part).num_rows for part in dlz_files(emulator, "part-*.parquet")] == [4, 2]
    assert (record.rows, record.files) == (6, 2)
    table = pq.read_table(tmp_path / "egress" / "event_counts" / f"exportTime={record.export_time}")
    pairs = sorted(zip(table.column("ecid").to_pylist(), table.column("eventType").to_pylist(), strict=True))
    assert len(pairs) == len(set(pairs)) == 6


@pytest.mark.usefixtures("four_rows_per_file")
def test_an_activation_in_parts_delivers_every_member_once(
    aep: AEPPlatform, emulator: RunningEmulator, tmp_path: Path
) -> None:
    scored_profiles(aep)  # six profiles p0..p5
    record = aep.upsert_audience(AudienceDefinition("everyone", "_acme.propensity >= 0.0", "all"), profile_source())
    [delivery] = aep.activate([aep.evaluate_audience(record.id).id], FileDestination("files", str(tmp_path)), ["email"])
    parts = dlz_files(emulator, "*.csv")
    assert [part.name.endswith("_2.csv") for part in parts] == [False, True]
    assert [pacsv.read_csv(part).num_rows for part in parts] == [4, 2]
    [delivered] = (tmp_path / "everyone").glob("*.csv")
    assert sorted(pacsv.read_csv(delivered).column("ecid").to_pylist()) == [f"p{i}" for i in range(6)]
    assert delivery.members == 6
