"""The spark backend's Platform operations on a real local Spark session: tables, batches, exports, audiences."""

from __future__ import annotations

import datetime as dt
import os

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aep_propensity.chunks import ChunkSequence
from aep_propensity.datasets.platform_export import ExportBatches
from aep_propensity.platform import (
    AudienceDefinition,
    Column,
    DatasetSpec,
    Field,
    PlatformError,
    ProfileSource,
    SchemaMismatchError,
    make_platform,
)
from aep_propensity.platform.core.destinations import FileDestination

SPEC = DatasetSpec(
    "people",
    (
        Column("ecid", "string"),
        Column("n", "int64"),
        Column("x", "float64"),
        Column("ts", "timestamp"),
        Column("d", "date"),
        Column("b", "bool"),
    ),
    identity="ecid",
)
WHEN = dt.datetime(2026, 3, 1, 12, 30, 15, 123456)


def people(ids: range) -> pa.Table:
    """Rows of ``people`` for the given numbers."""
    return pa.table(
        {
            "ecid": [f"p{i:03d}" for i in ids],
            "n": list(ids),
            "x": [i / 4 for i in ids],
            "ts": pa.array([WHEN + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us")),
            "d": [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in ids],
            "b": [i % 2 == 0 for i in ids],
        }
    )


@pytest.fixture
def platform(spark_session, tmp_path):
    """A spark platform on a fresh data root (sharing the test process's Spark session)."""
    return make_platform({"backend": "spark", "path": str(tmp_path / "platform"), "export_rows_per_file": 7})


def test_batches_replace_and_append_and_read_back_with_their_types(platform):
    assert not platform.exists("people")
    first = platform.ingest(SPEC, [people(range(0, 5)), people(range(5, 10))], replace=True)
    assert (first.rows, first.files, first.status) == (10, 2, "success")
    platform.ingest(SPEC, [people(range(10, 12))])
    handle = platform.handle("people")
    assert handle.row_count == 12 and handle.columns == tuple(SPEC.column_names)
    frame = platform.query('SELECT * FROM "people" ORDER BY ecid')
    assert frame["n"].tolist() == list(range(12))
    assert frame["ts"][3] == WHEN + dt.timedelta(seconds=3)  # microseconds kept, naive UTC
    assert frame["d"][2] == dt.date(2020, 1, 3)
    assert str(frame["n"].dtype) == "int64" and str(frame["x"].dtype) == "float64"
    platform.ingest(SPEC, [people(range(100, 101))], replace=True)
    assert platform.query('SELECT ecid FROM "people"')["ecid"].tolist() == ["p100"]
    assert [b.rows for b in platform.batches("people")] == [1, 2, 10]


def test_a_batch_with_other_columns_is_refused_and_a_bad_chunk_leaves_nothing(platform, tmp_path):
    platform.ingest(SPEC, [people(range(3))], replace=True)
    other = DatasetSpec("people", (Column("ecid", "string"),), identity="ecid")
    with pytest.raises(SchemaMismatchError, match=r"people.*\('n', 'bigint'\).*declares \[\('ecid', 'string'\)\]"):
        platform.ingest(other, [pa.table({"ecid": ["z"]})])
    bad = people(range(3, 5)).set_column(1, "n", pa.array(["7", "x"]))
    with pytest.raises(Exception, match="n"):
        platform.ingest(SPEC, [people(range(5, 8)), bad])
    assert platform.handle("people").row_count == 3
    failed = platform.batches("people")[0]
    assert failed.status == "failed" and "n" in failed.error
    assert not list((tmp_path / "platform" / "tables" / "people").glob(f"b-{failed.id}"))


def test_ctas_and_views_follow_the_tables_and_a_failed_ctas_keeps_the_old_table(platform):
    platform.ingest(SPEC, [people(range(6))], replace=True)
    made = platform.create_table_as("evens", 'SELECT ecid, n FROM "people" WHERE b')
    assert made.row_count == 3 and made.columns == ("ecid", "n")
    platform.create_view("big_evens", 'SELECT * FROM "evens" WHERE n >= 2')
    assert platform.handle("big_evens").row_count == 2
    platform.ingest(SPEC, [people(range(6, 10))])
    platform.create_table_as("evens", 'SELECT ecid, n FROM "people" WHERE b')
    assert platform.query('SELECT count(*) AS c FROM "big_evens"')["c"][0] == 4  # the view reads the new table
    with pytest.raises(PlatformError, match="evens"):
        platform.create_table_as("evens", 'SELECT no_such_column FROM "people"')
    assert platform.handle("evens").row_count == 5
    with pytest.raises(PlatformError, match="does not exist"):
        platform.handle("nothing")


def test_interactive_queries_are_capped(spark_session, tmp_path):
    platform = make_platform({"backend": "spark", "path": str(tmp_path / "p"), "interactive_row_limit": 4})
    platform.ingest(SPEC, [people(range(5))], replace=True)
    assert len(platform.query('SELECT * FROM "people" LIMIT 4')) == 4
    with pytest.raises(PlatformError, match="more than 4 rows"):
        platform.query('SELECT * FROM "people"')
    assert sum(batch.num_rows for batch in platform.read_batches('SELECT * FROM "people"')) == 5


def test_exports_are_spark_parquet_parts_in_the_landing_zone_layout(platform, tmp_path):
    platform.ingest(SPEC, [people(range(20))], replace=True)
    record = platform.export("people", str(tmp_path / "dlz"))
    folder = tmp_path / "dlz" / "people" / f"exportTime={record.export_time}"
    names = sorted(os.listdir(folder))
    assert names == [f"part-{i}.parquet" for i in range(len(names))] and len(names) >= 3  # 7 rows per file
    table = pq.read_table(folder)
    assert table.num_rows == record.rows == 20
    assert table.schema.field("ts").type == pa.timestamp("us")  # naive UTC, as the other backends write
    assert sorted(table.column("n").to_pylist()) == list(range(20))


def test_chunks_mapped_over_parquet_files_run_on_the_executors(platform, tmp_path):
    platform.ingest(SPEC, [people(range(50))], replace=True)
    record = platform.export("people", str(tmp_path / "dlz"))
    fs, path = fsspec.core.url_to_fs(record.path)
    spec = DatasetSpec("doubled", (Column("ecid", "string"), Column("twice", "int64"), Column("pid", "int64")))

    def double(batch: pa.RecordBatch) -> pa.Table:
        twice = pa.compute.multiply(batch.column("n"), 2)
        return pa.table({"ecid": batch.column("ecid"), "twice": twice, "pid": [os.getpid()] * batch.num_rows})

    chunks = ChunkSequence.mapped(double, ExportBatches(path, fs, 10), "doubled")
    assert chunks.parquet_source() is not None
    batch = platform.ingest(spec, chunks, replace=True)
    assert batch.rows == 50
    frame = platform.query('SELECT * FROM "doubled" ORDER BY ecid')
    assert frame["twice"].tolist() == [2 * i for i in range(50)]
    assert os.getpid() not in set(frame["pid"])  # transformed in Spark's Python workers, not in this process


def test_audiences_are_evaluated_replaced_and_delivered(platform, tmp_path):
    platform.ingest(SPEC, [people(range(10))], replace=True)
    source = ProfileSource("people", {"_acme.n": Field("n", "number"), "_acme.even": Field("b", "boolean")})
    big = platform.upsert_audience(AudienceDefinition("big", "_acme.n >= 7"), source)
    even = platform.upsert_audience(AudienceDefinition("even", "_acme.even = true"), source)
    assert platform.evaluate_audience(big.id).members == 3
    assert platform.evaluate_audience(even.id).members == 5
    again = platform.upsert_audience(AudienceDefinition("big", "_acme.n >= 8"), source)
    assert again.version == 2 and platform.evaluate_audience(big.id).members == 2
    membership = platform.query('SELECT audience_name, count(*) AS c FROM "audience_membership" GROUP BY 1 ORDER BY 1')
    assert dict(zip(membership["audience_name"], membership["c"], strict=True)) == {"big": 2, "even": 5}
    destination = FileDestination("files", str(tmp_path / "out"))
    jobs = [job.id for job in platform.audience_jobs()]
    delivered = platform.activate(jobs, destination, ["n"])
    assert sorted(d.members for d in delivered) == [2, 5]
    assert platform.activate(jobs, destination, ["n"]) == []  # already delivered
    files = sorted((tmp_path / "out").rglob("*.csv"))
    assert len(files) == 2
