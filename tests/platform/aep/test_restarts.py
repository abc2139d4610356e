"""The emulator killed at several points of a run's batch, then restarted: the failed run's batch either
never lands or is named as in doubt, and the next run converges to one consistent state (every dataset
as of that run alone). Issue 12, item 2."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from aep_propensity.platform import make_platform
from aep_propensity.platform.aep import AEPError, AEPPlatform
from aep_propensity.platform.aep.contract import BATCH_OK
from aep_propensity.platform.aep.ingestion import BatchInDoubt
from tests.emulator_process import RunningEmulator

from .conftest import aep_config
from .test_platform import EVENTS, PROFILES, events_frame, profiles_frame

pytestmark = pytest.mark.postgres


def run(emulator: RunningEmulator, people: int, offset: int, **config) -> AEPPlatform:
    """One run's platform session, which replaces profiles and events with ``people`` people from ``offset``."""
    platform = make_platform(*aep_config(emulator, **config))
    platform.ingest(PROFILES, [profiles_frame(people, offset)], replace=True)
    return platform


def tagged_events(n: int, tag: str) -> pd.DataFrame:
    """``n`` events whose ids carry the run's ``tag``."""
    frame = events_frame(n)
    frame["_id"] = [f"{tag}-{i}" for i in range(n)]
    return frame


def visible_batches(platform: AEPPlatform, dataset: str) -> list[str]:
    """The run ids of the dataset's visible batches."""
    return [b.run_id for b in platform.batches(dataset) if b.status in BATCH_OK]


@pytest.mark.parametrize(
    "point",
    ["uploading", "completed, not yet promoted", "promoted, not yet seen"],
)
def test_a_run_killed_with_the_emulator_at_any_point_converges_on_the_next_run(
    emulator: RunningEmulator, point: str
) -> None:
    good = run(emulator, 2, 0)
    good.ingest(EVENTS, [tagged_events(6, "good")], replace=True)

    # The failing run: profiles land, then the emulator dies during its events batch.
    slow = {"poll_interval_seconds": 3.0} if point == "promoted, not yet seen" else {}
    failing = run(emulator, 5, 100, **slow)
    emulator.set_faults({"batch_delay_seconds": 0.5 if point == "promoted, not yet seen" else 30})
    uploaded, failure = threading.Event(), []

    def chunks() -> Iterator[pd.DataFrame]:
        yield tagged_events(4, "failed-a")
        if point == "uploading":
            uploaded.set()
            time.sleep(2)  # the emulator dies here, before the batch is COMPLETEd
        yield tagged_events(4, "failed-b")
        uploaded.set()  # every file is sent: COMPLETE follows at once

    def ingest() -> None:
        try:
            failing.ingest(EVENTS, chunks(), replace=True)
        except AEPError as exc:
            failure.append(exc)

    worker = threading.Thread(target=ingest)
    worker.start()
    assert uploaded.wait(30)
    time.sleep(1.5 if point == "promoted, not yet seen" else 0.5)
    emulator.process.kill()
    emulator.process.wait()
    worker.join(120)
    [error] = failure
    if point == "uploading":
        assert not isinstance(error, BatchInDoubt)  # never COMPLETEd: it cannot land
    else:
        assert isinstance(error, BatchInDoubt) and "may still land" in str(error)
        assert f"(run {failing.run_id})" in str(error) and "dataset 'experience_events'" in str(error)

    emulator.start()  # a restart resumes the promotions it was doing: a completed batch lands now
    following = run(emulator, 3, 200)
    following.ingest(EVENTS, [tagged_events(5, "next")], replace=True)

    assert visible_batches(following, "profiles") == [following.run_id]
    assert visible_batches(following, "experience_events") == [following.run_id]
    assert sorted(following.query("SELECT ecid FROM profiles")["ecid"]) == ["p200", "p201", "p202"]
    assert {i.split("-")[0] for i in following.query('SELECT "_id" FROM experience_events')["_id"]} == {"next"}
