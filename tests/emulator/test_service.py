"""The emulator's background work and state, in process: crash guards, close, query timeouts, state schema."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from aep_propensity.emulator import flow_runs, flows, queries, segmentation
from aep_propensity.emulator.catalog import logical_type
from aep_propensity.emulator.config import EmulatorConfig
from aep_propensity.emulator.service import Emulator
from aep_propensity.emulator.store import Store
from aep_propensity.platform.core.port import ARROW_TYPES, Column
from tests.conftest import PG_DSN, require_postgres
from tests.emulator_process import drop_role, drop_schema

pytestmark = pytest.mark.postgres


def make_config(folder: Path, **options: object) -> EmulatorConfig:
    """A configuration on a fresh schema pair under ``folder``."""
    return EmulatorConfig(dsn=PG_DSN, schema=f"test_emu_{uuid.uuid4().hex[:10]}", data_dir=folder, **options)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[EmulatorConfig]:
    """A configuration whose two schemas and Query Service role are dropped afterwards."""
    require_postgres()
    made = make_config(tmp_path, query_timeout_seconds=1)
    yield made
    drop_schema(made.schema)
    drop_schema(made.state_schema)
    drop_role(f"{made.schema}_query")


@pytest.fixture
def emu(config: EmulatorConfig) -> Iterator[Emulator]:
    """An emulator in this process (no HTTP server), closed afterwards unless the test closed it."""
    running = Emulator(config)
    yield running
    if not running.stopping.is_set():
        running.close()


def segment_job(emu: Emulator, status: str = "PROCESSING") -> str:
    """Store a segment job record; its id."""
    job_id = str(uuid.uuid4())
    emu.store.put("segmentjobs", job_id, {"id": job_id, "status": status, "segments": [], "metrics": {}})
    return job_id


def query_record(emu: Emulator, sql: str) -> str:
    """Store a SUBMITTED query record for ``sql``; its id."""
    query_id = str(uuid.uuid4())
    emu.store.put("queries", query_id, {"id": query_id, "state": "SUBMITTED", "effectiveSQL": sql, "errors": []})
    return query_id


def explode(message: str) -> None:
    """A background job that dies unexpectedly."""
    raise RuntimeError(message)


def test_crashed_job_marks_its_record_failed(emu: Emulator) -> None:
    """A background job dying outside its own error handling leaves its record FAILED, not PROCESSING."""
    job_id = segment_job(emu)
    future = emu.submit(explode, "boom", on_crash=lambda message: segmentation.fail_segment_job(emu, job_id, message))
    future.result(timeout=10)
    job = emu.store.get("segmentjobs", job_id)
    assert job is not None and job["status"] == "FAILED"
    assert "boom" in job["errors"][0]["msg"]


def test_run_of_a_deleted_flow_fails(emu: Emulator) -> None:
    """A run whose flow was deleted before it started fails instead of staying in progress."""
    flow = {"id": "f1", "name": "gone", "flowSpec": {"id": flows.DLZ_FLOW_SPEC}, "targetConnectionIds": ["t"]}
    emu.store.put("flows", "f1", flow)
    run = {"id": "r1", "flowId": "f1", "metrics": {"durationSummary": {}, "statusSummary": {"status": "processing"}}}
    emu.store.put("runs", "r1", run)
    emu.store.delete("flows", "f1")
    flow_runs.run_dataset_export(emu, "r1", [])
    summary = emu.store.get("runs", "r1")["metrics"]["statusSummary"]
    assert summary["status"] == "failed" and "deleted" in summary["errors"][0]["message"]


def test_close_waits_for_running_jobs(emu: Emulator, config: EmulatorConfig) -> None:
    """close() lets a running job finish its store writes before the store's pool closes."""

    def slow_write() -> None:
        time.sleep(0.5)
        emu.store.put("probe", "p", {"id": "p", "written": True})

    emu.submit(slow_write)
    time.sleep(0.1)
    emu.close()
    store = Store(PG_DSN, config.state_schema)
    try:
        assert store.get("probe", "p") == {"id": "p", "written": True}
    finally:
        store.close()


def test_query_timeout(emu: Emulator) -> None:
    """A query running past --query-timeout-seconds FAILS with Query Service's timeout code 53400."""
    query_id = query_record(emu, "SELECT pg_sleep(5)")
    started = time.monotonic()
    queries.run_query(emu, query_id)
    query = emu.store.get("queries", query_id)
    assert time.monotonic() - started < 4
    assert query["state"] == "FAILED" and query["errors"][0]["code"] == "53400"


def test_killed_query_commits_nothing(emu: Emulator) -> None:
    """A query cancelled before its run ends leaves no table behind and stays KILLED."""
    query_id = query_record(emu, "CREATE TABLE killed_ctas AS SELECT pg_sleep(0.5) AS x")
    future = emu.submit(queries.run_query, emu, query_id)
    deadline = time.monotonic() + 5
    while emu.store.get("queries", query_id)["state"] == "SUBMITTED" and time.monotonic() < deadline:
        time.sleep(0.02)
    queries.cancel_query(emu, query_id)
    future.result(timeout=10)
    assert emu.store.get("queries", query_id)["state"] == "KILLED"
    with emu.engine.connect(read_only=True) as conn:
        assert emu.engine.table_columns(conn, "killed_ctas") is None


def test_state_lives_in_its_own_schema(emu: Emulator, config: EmulatorConfig) -> None:
    """The emu_* tables are in <schema>_state; the data schema has none, so queries cannot see them."""
    with emu.engine.connect(read_only=True) as conn:
        tables = emu.engine.fetchall(
            conn,
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'emu%%' AND table_schema IN (%s, %s)",
            [config.schema, config.state_schema],
        )
    assert {schema for schema, _ in tables} == {config.state_schema}
    assert {name for _, name in tables} == {"emu_objects", "emu_tokens", "emu_segment_members"}
    query_id = query_record(emu, "SELECT count(*) FROM emu_objects")
    queries.run_query(emu, query_id)
    failed = emu.store.get("queries", query_id)
    assert failed["state"] == "FAILED" and failed["errors"][0]["code"] == "42P01"


def test_legacy_state_moves_to_the_state_schema(tmp_path: Path) -> None:
    """State an emulator kept among the dataset tables before the split is moved, not lost."""
    require_postgres()
    config = make_config(tmp_path)
    conn = psycopg2.connect(PG_DSN)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{config.schema}"')
            cur.execute(
                f'CREATE TABLE "{config.schema}".emu_objects (kind TEXT NOT NULL, id TEXT NOT NULL, '
                "body JSONB NOT NULL, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, id))"
            )
            cur.execute(
                f'INSERT INTO "{config.schema}".emu_objects VALUES (%s, %s, %s, 0)',
                ["datasets", "d1", json.dumps({"id": "d1", "name": "old"})],
            )
        emu = Emulator(config)
        try:
            assert emu.store.get("datasets", "d1") == {"id": "d1", "name": "old"}
        finally:
            emu.close()
    finally:
        conn.close()
        drop_schema(config.schema)
        drop_schema(config.state_schema)
        drop_role(f"{config.schema}_query")


def test_logical_types_round_trip(emu: Emulator) -> None:
    """The engine's SQL type of every logical type reads back as that logical type."""
    for logical in ARROW_TYPES:
        sql_type = emu.engine.sql_type(Column("c", logical))  # type: ignore[arg-type]
        assert logical_type(emu, sql_type.lower()) == logical


def test_schema_names_are_checked(tmp_path: Path) -> None:
    """A schema whose state schema name would be invalid is refused at configuration."""
    with pytest.raises(ValueError, match="state schema"):
        EmulatorConfig(schema="s" * 60, data_dir=tmp_path)
