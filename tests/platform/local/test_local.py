"""The local platform's contract, run on DuckDB and on PostgreSQL."""

from __future__ import annotations

import math
import re
import threading
import time
from datetime import datetime

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aep_propensity.platform import Column, DatasetSpec, PlatformError, SchemaMismatchError, make_platform
from tests.conftest import PG_DSN, platform_config

SPEC = DatasetSpec(
    "people",
    (
        Column("ecid", "string"),
        Column("age", "int64"),
        Column("score", "float64"),
        Column("active", "bool"),
        Column("seen", "timestamp"),
    ),
    identity="ecid",
    profile_enabled=True,
)


def chunk(start: int, n: int) -> pa.Table:
    """n rows with ids start..start+n-1."""
    return pa.table(
        {
            "ecid": [f"p{i}" for i in range(start, start + n)],
            "age": list(range(start, start + n)),
            "score": [i / 10 for i in range(start, start + n)],
            "active": [i % 2 == 0 for i in range(start, start + n)],
            "seen": pa.array(
                [datetime(2026, 1, 1, 0, 0, i % 60, 123456) for i in range(start, start + n)], pa.timestamp("us")
            ),
        }
    )


def test_ingest_is_one_batch_and_round_trips(platform):
    batch = platform.ingest(SPEC, [chunk(0, 3), chunk(3, 4).to_pandas(), chunk(7, 0)])
    assert (batch.status, batch.rows, batch.files) == ("success", 7, 3)
    frame = platform.query('SELECT * FROM "people" ORDER BY age')
    assert frame["ecid"].tolist() == [f"p{i}" for i in range(7)]
    assert frame["seen"].iloc[1] == pd.Timestamp("2026-01-01 00:00:01.123456")
    assert frame["active"].tolist() == [True, False] * 3 + [True]
    handle = platform.handle("people")
    assert (handle.row_count, handle.columns) == (7, ("ecid", "age", "score", "active", "seen"))
    [recorded] = platform.batches("people")
    assert (recorded.id, recorded.status, recorded.rows, recorded.files) == (batch.id, "success", 7, 3)
    registry = platform.datasets()
    assert registry.loc[0, "columns"] == {
        "ecid": "string",
        "age": "int64",
        "score": "float64",
        "active": "bool",
        "seen": "timestamp",
    }
    assert (registry.loc[0, "identity"], bool(registry.loc[0, "profile_enabled"])) == ("ecid", True)


def test_append_and_replace(platform):
    platform.ingest(SPEC, [chunk(0, 2)])
    platform.ingest(SPEC, [chunk(2, 2)])
    assert platform.handle("people").row_count == 4
    platform.ingest(SPEC, [chunk(10, 1)], replace=True)
    assert platform.query('SELECT ecid FROM "people"')["ecid"].tolist() == ["p10"]


def failing_chunks():
    """A producer that dies after its first chunk."""
    yield chunk(100, 5)
    raise RuntimeError("producer crashed")


@pytest.mark.parametrize(
    ("chunks", "error", "message"),
    [
        (
            lambda: [chunk(100, 5), chunk(105, 2).drop_columns(["age"])],
            SchemaMismatchError,
            "missing column 'age' (2 rows)",
        ),
        (
            lambda: [chunk(100, 5), chunk(105, 3).set_column(1, "age", pa.array(["1", "x", "y"]))],
            SchemaMismatchError,
            "column 'age' has type string, not int64 (3 bad rows; first at row 0: '1')",
        ),
        (
            lambda: [chunk(100, 5), chunk(105, 3).set_column(0, "ecid", pa.array(["a", None, None]))],
            SchemaMismatchError,
            "identity column 'ecid' is null in 2 rows",
        ),
        (
            lambda: [chunk(100, 5).append_column("extra", pa.array([1] * 5))],
            SchemaMismatchError,
            "unexpected column 'extra'",
        ),
        (failing_chunks, RuntimeError, "producer crashed"),
    ],
    ids=["missing-column", "wrong-type", "null-identity", "extra-column", "producer-crash"],
)
def test_failed_batch_leaves_nothing_visible(platform, chunks, error, message):
    platform.ingest(SPEC, [chunk(0, 3)])
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        platform.ingest(SPEC, chunks())
    assert platform.handle("people").row_count == 3
    statuses = [b.status for b in platform.batches("people")]
    assert statuses == ["failed", "success"]
    assert message.split(" (")[0] in platform.batches("people")[0].error


def test_failed_replace_keeps_old_rows(platform):
    platform.ingest(SPEC, [chunk(0, 3)])
    with pytest.raises(RuntimeError):
        platform.ingest(SPEC, failing_chunks(), replace=True)
    assert platform.handle("people").row_count == 3


def test_replacing_a_table_that_a_view_reads_keeps_the_view(platform):
    """A second run re-ingests profiles under the enriched_profiles view (PostgreSQL binds views early)."""
    platform.ingest(SPEC, [chunk(0, 3)], replace=True)
    platform.create_view("adults", 'SELECT ecid FROM "people" WHERE age >= 1')
    batch = platform.ingest(SPEC, [chunk(10, 3)], replace=True)
    assert sorted(platform.query('SELECT ecid FROM "adults"')["ecid"]) == ["p10", "p11", "p12"]
    assert not platform.exists(f"_batch_{batch.id}")


def test_retired_rows_go_in_the_batch_transaction(platform):
    """AEP's batch replay: the new batch's rows appear and the retired rows vanish together, or neither."""
    platform.ingest(SPEC, [chunk(0, 5)])
    with pytest.raises(RuntimeError, match="producer crashed"):
        platform.ingest(SPEC, failing_chunks(), retire=("ecid", ["p0", "p1"]))
    assert platform.handle("people").row_count == 5  # nothing retired by a failed batch
    platform.ingest(SPEC, [chunk(5, 2)], retire=("ecid", ["p0", "p1"]))
    ecids = sorted(platform.query('SELECT ecid FROM "people"')["ecid"])
    assert ecids == ["p2", "p3", "p4", "p5", "p6"]
    with pytest.raises(ValueError, match="retire is for appended batches"):
        platform.ingest(SPEC, [chunk(0, 1)], replace=True, retire=("ecid", ["p2"]))


def test_append_with_changed_schema_is_refused(platform):
    platform.ingest(SPEC, [chunk(0, 1)])
    other = DatasetSpec("people", (Column("ecid", "string"),), identity="ecid")
    with pytest.raises(SchemaMismatchError, match="exists with columns"):
        platform.ingest(other, [pa.table({"ecid": ["x"]})])


def test_lossless_casts_are_accepted(platform):
    table = chunk(0, 2).set_column(1, "age", pa.array([1, 2], pa.int32()))
    assert platform.ingest(SPEC, [table]).rows == 2


def test_create_table_as_replaces_atomically(platform):
    platform.ingest(SPEC, [chunk(0, 10)])
    handle = platform.create_table_as("adults", 'SELECT ecid, age FROM "people" WHERE age >= 5')
    assert (handle.name, handle.columns, handle.row_count) == ("adults", ("ecid", "age"), 5)
    with pytest.raises(PlatformError, match="creating table 'adults' failed"):
        platform.create_table_as("adults", 'SELECT no_such_column FROM "people"')
    assert platform.handle("adults").row_count == 5


def test_query_is_capped_like_query_service(platform):
    platform.ingest(SPEC, [chunk(0, 20)])
    platform.interactive_row_limit = 10
    assert len(platform.query('SELECT * FROM "people" LIMIT 10')) == 10
    with pytest.raises(PlatformError, match="more than 10 rows"):
        platform.query('SELECT * FROM "people"')


def test_export_writes_dlz_layout(platform, tmp_path):
    platform.ingest(SPEC, [chunk(0, 25)])
    platform.exports.rows_per_file = 10
    record = platform.export("people", str(tmp_path / "dlz"))
    folder = tmp_path / "dlz" / "people" / f"exportTime={record.export_time}"
    parts = sorted(folder.iterdir())
    assert all(re.fullmatch(r"part-\d+\.parquet", part.name) for part in parts) and len(parts) == record.files >= 3
    assert all(pq.ParquetFile(part).metadata.num_rows <= 10 for part in parts)
    table = pq.read_table(folder)
    assert table.num_rows == record.rows == 25
    assert table.schema.field("seen").type == pa.timestamp("us")
    assert sorted(table.column("age").to_pylist()) == list(range(25))
    assert record.bytes > 0
    second = platform.export("people", f"memory://{tmp_path.name}/dlz")  # any fsspec filesystem
    assert second.rows == 25 and second.path.startswith("memory://")
    platform.ingest(SPEC, [chunk(25, 9_975)])
    platform.exports.rows_per_file = 4_096  # large enough for DuckDB's own parallel writer
    big = platform.export("people", str(tmp_path / "big"))
    big_parts = sorted((tmp_path / "big" / "people" / f"exportTime={big.export_time}").iterdir())
    assert big.rows == 10_000 and len(big_parts) == big.files >= 3
    assert all(pq.ParquetFile(part).metadata.num_rows <= 4_096 for part in big_parts)
    third = platform.export("people", str(tmp_path / "dlz"))
    assert third.export_time > record.export_time
    assert not [p for p in (tmp_path / "dlz" / "people").iterdir() if p.name.startswith("_staging")]
    with pytest.raises(ValueError, match="compression must be one of"):
        platform.export("people", str(tmp_path / "dlz"), compression="snappy'); DROP TABLE people; --")


def test_read_batches_streams_everything(platform):
    platform.ingest(SPEC, [chunk(0, 1000)])
    batches = list(platform.read_batches('SELECT age FROM "people"', batch_rows=128))
    assert max(b.num_rows for b in batches) <= 128
    assert sum(b.num_rows for b in batches) == 1000


def test_missing_table_is_a_clear_error(platform):
    with pytest.raises(PlatformError, match="table 'nope' does not exist"):
        platform.handle("nope")


def test_dropped_connection_leaves_nothing_visible(pg_schema, tmp_path):
    """PostgreSQL kills the ingesting connection mid-batch: no rows appear, the batch is failed."""
    platform = make_platform(*platform_config("postgres", tmp_path, pg_schema))
    platform.ingest(SPEC, [chunk(0, 3)])
    killed = threading.Event()

    def kill_the_copy() -> None:
        admin = psycopg2.connect(PG_DSN)
        admin.autocommit = True  # a fresh view of pg_stat_activity at every poll
        with admin.cursor() as cur:
            for _ in range(2_000):
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'COPY \"people\"%%' AND pid <> pg_backend_pid()"
                )
                if cur.fetchone() is not None:
                    killed.set()
                    break
                time.sleep(0.005)
        admin.close()

    killer = threading.Thread(target=kill_the_copy)
    killer.start()
    big = pa.concat_tables([chunk(0, 1_000)] * 300)  # 300,000 rows: long enough a COPY to be seen
    with pytest.raises(psycopg2.Error):
        platform.ingest(SPEC, [big, big, big, big])
    killer.join()
    assert killed.is_set()
    assert platform.handle("people").row_count == 3
    assert [b.status for b in platform.batches("people")] == ["failed", "success"]
    assert not platform.query("SELECT table_name FROM information_schema.tables WHERE table_name LIKE '_batch_%'").size


def test_query_returns_every_row_of_a_multi_batch_result(platform):
    """A grouped result can arrive in several batches: all of them come back."""
    platform.ingest(SPEC, [chunk(0, 5_000)])
    frame = platform.query('SELECT age % 1000 AS bucket, count(*) AS n FROM "people" GROUP BY age % 1000')
    assert len(frame) == 1_000 and frame["n"].sum() == 5_000


def test_strings_that_look_like_nulls_and_nan_read_back_as_stored(platform):
    """``NA``, ``NULL``, ``nan``... are strings, an empty string is not NULL, and NaN stays NaN."""
    texts = ["NA", "N/A", "NULL", "null", "nan", "#N/A", "", None]
    spec = DatasetSpec("odd", (Column("ecid", "string"), Column("note", "string"), Column("x", "float64")))
    values = pa.table(
        {
            "ecid": [f"p{i}" for i in range(len(texts))],
            "note": texts,
            "x": [float("nan"), None, 1.5, 0.0, -1.0, 2.0, 3.0, 4.0],
        }
    )
    platform.ingest(spec, [values], replace=True)
    read = pa.Table.from_batches(list(platform.read_batches('SELECT * FROM "odd" ORDER BY ecid')))
    assert read.column("note").to_pylist() == texts
    x = read.column("x").to_pylist()
    assert math.isnan(x[0]) and x[1] is None and x[2:] == [1.5, 0.0, -1.0, 2.0, 3.0, 4.0]
    queried = platform.query('SELECT note FROM "odd" ORDER BY ecid')["note"].tolist()
    assert queried[:7] == texts[:7] and pd.isna(queried[7])


def test_nul_text_is_stored_where_the_engine_can_and_refused_naming_it_where_not(platform, engine_name):
    spec = DatasetSpec("notes", (Column("ecid", "string"), Column("note", "string")), identity="ecid")
    rows = [pa.table({"ecid": ["a", "b"], "note": ["plain", "nul\x00inside"]})]
    if engine_name == "duckdb":
        platform.ingest(spec, rows)
        assert platform.query('SELECT note FROM "notes" ORDER BY ecid')["note"].tolist() == ["plain", "nul\x00inside"]
        return
    with pytest.raises(SchemaMismatchError, match=r"dataset 'notes', chunk 1: column 'note'.*1 bad row"):
        platform.ingest(spec, rows)
    assert not platform.exists("notes") and platform.batches("notes")[0].status == "failed"
