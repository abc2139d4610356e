"""Spark batches survive the death of their driver: kill -9 mid-batch leaves nothing visible, the JVM goes
with the driver, and the next batch of any process recovers the ledger and deletes the dead batch's folder.
Readers in another process read the table while a batch loads. Real processes, real kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from aep_propensity.platform import Column, DatasetSpec, make_platform

SPEC = DatasetSpec("people", (Column("ecid", "string"), Column("batch", "int64")), identity="ecid")
OTHER = DatasetSpec("other", (Column("ecid", "string"),), identity="ecid")
ROOT = Path(__file__).resolve().parents[3]

# A child driver that ingests into "people" as batch `n`: `chunks` chunks of 1,000 rows made on the driver
# (mode "driver"), or the export at `export` mapped on the executors (mode "executors"); either way slowly,
# touching `marker` once the batch's rows are being made.
CHILD = """
import json, os, sys, time
import fsspec, pyarrow as pa
from aep_propensity.chunks import ChunkSequence
from aep_propensity.datasets.platform_export import ExportBatches
from aep_propensity.platform import Column, DatasetSpec, make_platform
config, n, mode, chunks, export, marker = json.loads(sys.argv[1])
spec = DatasetSpec("people", (Column("ecid", "string"), Column("batch", "int64")), identity="ecid")
def touch():
    open(marker, "a").close()
def driver():
    for c in range(chunks):
        touch()
        time.sleep(0.1)
        yield pa.table({"ecid": [f"n{n}-c{c}-r{r}" for r in range(1000)], "batch": [n] * 1000})
def slowly(batch):
    touch()
    time.sleep(0.5)
    return pa.table({"ecid": batch.column("ecid"), "batch": [n] * batch.num_rows})
platform = make_platform(config)
if mode == "driver":
    data = driver()
else:
    fs, path = fsspec.core.url_to_fs(export)
    data = ChunkSequence.mapped(slowly, ExportBatches(path, fs, 100), "people")
platform.ingest(spec, data, replace=False)
print("done", flush=True)
"""


def start_child(config: dict, n: int, mode: str, marker: Path, chunks: int = 50, export: str = "") -> subprocess.Popen:
    """Start a driver process that ingests batch ``n``."""
    argument = json.dumps([config, n, mode, chunks, export, str(marker)])
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, argument],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_for_file(path: Path, child: subprocess.Popen, timeout: float = 120.0) -> None:
    """Wait until the child has touched ``path`` (its batch is under way)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if child.poll() is not None:
            raise AssertionError(f"child ended before its batch began: {child.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "the child's batch never began"
        time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (its JVM, the JVM's Python workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """The processes of ``pids`` that still run (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def kill_driver(child: subprocess.Popen) -> None:
    """SIGKILL the driver, then wait until every process it started (the JVM included) is gone."""
    below = descendants(child.pid)
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 60
    while alive(below):
        assert time.monotonic() < deadline, f"processes of the killed driver still run: {alive(below)}"
        time.sleep(0.2)


def folders(root: Path, dataset: str) -> set[str]:
    """The batch folders of ``dataset`` under the data root."""
    return {path.name for path in (root / "tables" / dataset).glob("b-*")}


@pytest.fixture
def config(spark_session, tmp_path) -> dict:
    """A spark platform's configuration on a fresh data root."""
    return {"backend": "spark", "path": str(tmp_path / "platform"), "master": "local[2]"}


@pytest.mark.parametrize("mode", ["driver", "executors"])
def test_a_driver_killed_mid_batch_leaves_nothing_and_the_next_batch_recovers(config, tmp_path, mode):
    platform = make_platform(config)
    platform.ingest(SPEC, [pa.table({"ecid": [f"e{i}" for i in range(500)], "batch": [0] * 500})], replace=True)
    export = platform.export("people", str(tmp_path / "dlz")).path if mode == "executors" else ""
    before = folders(tmp_path / "platform", "people")
    marker = tmp_path / "marker"
    child = start_child(config, 1, mode, marker, export=export)
    wait_for_file(marker, child)
    time.sleep(1.0)  # rows of the batch are being written
    kill_driver(child)

    [dead] = [b for b in platform.batches("people") if b.status == "loading"]
    assert platform.query('SELECT batch, count(*) AS n FROM "people" GROUP BY batch')["n"].tolist() == [500]
    assert folders(tmp_path / "platform", "people") - before == {f"b-{dead.id}"}  # written, but unnamed

    platform.ingest(OTHER, [pa.table({"ecid": ["x"]})])  # the next batch, of any dataset, recovers it
    [recovered] = [b for b in platform.batches("people") if b.id == dead.id]
    assert recovered.status == "failed" and f"pid {child.pid}" in recovered.error
    assert folders(tmp_path / "platform", "people") == before
    assert platform.handle("people").row_count == 500


def test_readers_read_while_another_process_loads_a_batch(config, tmp_path):
    platform = make_platform(config)
    platform.ingest(SPEC, [pa.table({"ecid": ["a", "b"], "batch": [0, 0]})], replace=True)
    marker = tmp_path / "marker"
    child = start_child(config, 1, "driver", marker, chunks=40)
    wait_for_file(marker, child)
    assert platform.query('SELECT count(*) AS n FROM "people"')["n"][0] == 2  # the old rows, mid-batch
    assert platform.handle("people").row_count == 2
    assert child.communicate(timeout=120)[0].strip() == "done", child.stderr
    assert platform.query('SELECT count(*) AS n FROM "people"')["n"][0] == 40_002
