"""Batches survive the death of the process that loads them: kill -9 at any point leaves the table as of
its last successful batch, and the next batch recovers the ledger (issue 12, item 3). Run on DuckDB and
on PostgreSQL, with real processes and real kills."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from aep_propensity.platform import Column, DatasetSpec, make_platform
from tests.conftest import platform_config

logger = logging.getLogger(__name__)

SPEC = DatasetSpec("people", (Column("ecid", "string"), Column("batch", "int64")), identity="ecid")
OTHER = DatasetSpec("other", (Column("ecid", "string"),), identity="ecid")

# A child process that ingests `chunks` chunks of `rows` rows each into "people" (tagged with its batch
# number `n`), pausing `pause` seconds before each chunk; it prints "loading" once its batch has begun.
CHILD = """
import json, sys, time
import pyarrow as pa
from aep_propensity.platform import Column, DatasetSpec, make_platform
config, credentials, n, chunks, rows, pause, replace = json.loads(sys.argv[1])
spec = DatasetSpec("people", (Column("ecid", "string"), Column("batch", "int64")), identity="ecid")
def produce():
    for c in range(chunks):
        time.sleep(pause)
        if c == 0:
            print("loading", flush=True)
        yield pa.table({"ecid": [f"n{n}-c{c}-r{r}" for r in range(rows)], "batch": [n] * rows})
make_platform(config, credentials).ingest(spec, produce(), replace=replace)
print("done", flush=True)
"""


@pytest.fixture
def setup(engine_name, tmp_path, request):
    """The platform's config and credentials on each engine, and the platform itself."""
    schema = request.getfixturevalue("pg_schema") if engine_name == "postgres" else None
    config, credentials = platform_config(engine_name, tmp_path, schema)
    return config, credentials, make_platform(config, credentials)


def start_child(config, credentials, n: int, chunks: int, rows: int, pause: float, replace: bool) -> subprocess.Popen:
    """Start an ingesting child process."""
    argument = json.dumps([config, credentials, n, chunks, rows, pause, replace])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, argument], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for(process: subprocess.Popen, word: str) -> None:
    """Read the child's output until it prints ``word``."""
    for line in process.stdout:
        if line.strip() == word:
            return
    raise AssertionError(f"child ended before {word!r}: {process.stderr.read()[-2000:]}")


def staging_tables(platform) -> list[str]:
    """The staging tables left in the platform's database."""
    with platform.engine.connect(read_only=True) as conn:
        return [name for name in platform.engine.table_names(conn) if name.startswith("_batch_")]


def assert_consistent(platform, replace: bool) -> None:
    """No batch loading, no staging table, and the table holds exactly its successful batches' rows."""
    batches = platform.batches("people")
    assert not [b for b in batches if b.status == "loading"], batches
    assert staging_tables(platform) == []
    succeeded = [b for b in batches if b.status == "success"]
    if not succeeded:
        assert not platform.exists("people") or platform.handle("people").row_count == 0
        return
    counts = platform.query('SELECT batch, count(*) AS n FROM "people" GROUP BY batch ORDER BY batch')
    rows_by_batch = dict(zip(counts["batch"], counts["n"], strict=True))
    if replace:  # one batch's rows, whole: the newest successful one
        assert len(rows_by_batch) == 1 and sum(rows_by_batch.values()) == succeeded[0].rows
    else:  # every successful batch's rows, whole
        assert sum(rows_by_batch.values()) == sum(b.rows for b in succeeded)


@pytest.mark.parametrize("replace", [True, False], ids=["replacing", "appending"])
def test_a_batch_killed_mid_load_is_recovered_by_the_next(setup, replace):
    config, credentials, platform = setup
    platform.ingest(SPEC, [pa.table({"ecid": ["a", "b"], "batch": [0, 0]})], replace=True)
    child = start_child(config, credentials, 1, chunks=50, rows=1000, pause=0.05, replace=replace)
    wait_for(child, "loading")
    time.sleep(0.3)  # some chunks are in
    child.send_signal(signal.SIGKILL)
    child.wait()
    [dead] = [b for b in platform.batches("people") if b.status == "loading"]  # stale, as the kill left it
    assert platform.query('SELECT count(*) AS n FROM "people"')["n"][0] == 2  # nothing of it is visible

    platform.ingest(OTHER, [pa.table({"ecid": ["x"]})])  # the next batch, of any dataset, recovers it
    [recovered] = [b for b in platform.batches("people") if b.id == dead.id]
    assert recovered.status == "failed" and "abandoned" in recovered.error and f"pid {child.pid}" in recovered.error
    assert_consistent(platform, replace)


def test_a_live_batch_of_another_process_is_never_touched(setup):
    config, credentials, platform = setup
    platform.ingest(SPEC, [pa.table({"ecid": ["a"], "batch": [0]})])
    first = start_child(config, credentials, 1, chunks=20, rows=500, pause=0.1, replace=False)
    second = start_child(config, credentials, 2, chunks=20, rows=500, pause=0.1, replace=False)
    wait_for(first, "loading")
    platform.ingest(OTHER, [pa.table({"ecid": ["x"]})])  # a third process opens the platform mid-load
    for child in (first, second):
        wait_for(child, "done")
        assert child.wait() == 0, child.stderr.read()
    assert {b.status for b in platform.batches("people")} == {"success"}
    counts = platform.query('SELECT batch, count(*) AS n FROM "people" GROUP BY batch ORDER BY batch')
    assert counts["n"].tolist() == [1, 10_000, 10_000]


@pytest.mark.slow
def test_twenty_kills_at_random_points_leave_table_and_ledger_consistent(setup):
    """Kill a loading process (SIGKILL or SIGTERM) after a random delay, 20 times, its batches replacing
    and appending in turn: mid-chunk, mid-commit or after it finished. Each time the next batch recovers
    the ledger, and the table holds exactly the successful batches' rows (a replacing one's alone, then
    the appending ones after it), each batch whole."""
    config, credentials, platform = setup
    rng = random.Random(12)
    expected: set[int] = set()
    for n in range(1, 21):
        replace = n % 2 == 1
        succeeded_before = [b.status for b in platform.batches("people")].count("success")
        child = start_child(config, credentials, n, chunks=10, rows=2000, pause=0.05, replace=replace)
        wait_for(child, "loading")  # its batch has begun
        time.sleep(rng.uniform(0.0, 1.2))  # the batch takes about 0.6 s: some kills come after it ended
        child.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
        child.wait()
        platform.ingest(OTHER, [pa.table({"ecid": [f"x{n}"]})])
        batches = platform.batches("people")
        assert not [b for b in batches if b.status == "loading"] and staging_tables(platform) == []
        if [b.status for b in batches].count("success") > succeeded_before:
            expected = {n} if replace else expected | {n}
        counts = platform.query('SELECT batch, count(*) AS n FROM "people" GROUP BY batch') if expected else None
        assert expected == (set() if counts is None else set(counts["batch"]))
        assert counts is None or set(counts["n"]) == {20_000}
    recovered = [b for b in platform.batches("people") if b.error and "abandoned" in b.error]
    logger.info("20 kills: %d batches recovered, %d had succeeded", len(recovered), 20 - len(recovered))
    assert len(recovered) >= 5, [b.status for b in platform.batches("people")]  # really killed mid-way
