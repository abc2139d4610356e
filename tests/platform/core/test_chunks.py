"""Chunk conformance: casts are exact or refused, and a refusal names dataset, chunk, column and rows."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aep_propensity.platform import Column, DatasetSpec, SchemaMismatchError
from aep_propensity.platform.core.chunks import conform_chunk


def one_column(kind: str) -> DatasetSpec:
    """A dataset of one column ``v`` of logical type ``kind``."""
    return DatasetSpec("kinds", (Column("v", kind),))  # type: ignore[arg-type]


def moments(*iso: str) -> pa.Array:
    """Microsecond timestamps from ISO texts, years before 1 and after 9999 included (numpy's signed years)."""
    return pa.array(np.array(iso, dtype="datetime64[us]"))


def days(*iso: str) -> pa.Array:
    """Dates from ISO texts, far years included."""
    return pa.array(np.array(iso, dtype="datetime64[D]").astype(np.int32)).cast(pa.date32())


def refused(kind: str, values: pa.Array, message: str, **options: bool) -> None:
    """Conforming ``values`` to a ``kind`` column fails with exactly ``message`` after the chunk's name."""
    with pytest.raises(SchemaMismatchError) as caught:
        conform_chunk(pa.table({"v": values}), one_column(kind), 3, **options)
    assert str(caught.value) == f"dataset 'kinds', chunk 3: {message}"


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        ("bool", pa.array([1, None, -7]), "column 'v' has type int64, not bool (2 bad rows; first at row 0: 1)"),
        ("int64", pa.array(["007", "7"]), "column 'v' has type string, not int64 (2 bad rows; first at row 0: '007')"),
        ("float64", pa.array(["0.5"]), "column 'v' has type string, not double (1 bad row; first at row 0: '0.5')"),
        ("bool", pa.array(["true"]), "column 'v' has type string, not bool (1 bad row; first at row 0: 'true')"),
        ("string", pa.array([7]), "column 'v' has type int64, not string (1 bad row; first at row 0: 7)"),
        ("int64", pa.array([True]), "column 'v' has type bool, not int64 (1 bad row; first at row 0: true)"),
        (
            "timestamp",
            pa.array(["2026-01-01 00:00:00"]),
            "column 'v' has type string, not timestamp[us] (1 bad row; first at row 0: '2026-01-01 00:00:00')",
        ),
        (
            "date",
            pa.array([datetime(2026, 1, 1)], pa.timestamp("us", tz="UTC")),
            "column 'v' has type timestamp[us, tz=UTC], not date32[day] "
            "(1 bad row; first at row 0: 2026-01-01 00:00:00.000000Z)",
        ),
    ],
    ids=[
        "int-as-bool",
        "text-as-int",
        "text-as-float",
        "text-as-bool",
        "int-as-text",
        "bool-as-int",
        "text-as-timestamp",
        "zoned-timestamp-as-date",
    ],
)
def test_casts_across_kinds_are_refused(kind: str, values: pa.Array, message: str) -> None:
    refused(kind, values, message)


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        (
            "date",
            pa.array([datetime(2026, 1, 1), datetime(2026, 1, 2, 5, 30)], pa.timestamp("us")),
            "column 'v' has type timestamp[us], not date32[day], and not every value casts exactly "
            "(1 bad row; first at row 1: 2026-01-02 05:30:00.000000)",
        ),
        (
            "int64",
            pa.array([1.0, None, 1.5, float("nan"), float("inf")]),
            "column 'v' has type double, not int64, and not every value casts exactly "
            "(3 bad rows; first at row 2: 1.5)",
        ),
        (
            "float64",
            pa.array([1, 2**53, 2**53 + 1, -(2**60)]),
            "column 'v' has type int64, not double, and not every value casts exactly "
            "(2 bad rows; first at row 2: 9007199254740993)",
        ),
        (
            "int64",
            pa.array([2**63], pa.uint64()),
            "column 'v' has type uint64, not int64, and not every value casts exactly "
            "(1 bad row; first at row 0: 9223372036854775808)",
        ),
        (
            "timestamp",
            pa.array([1_000, 1_001], pa.timestamp("ns")),
            "column 'v' has type timestamp[ns], not timestamp[us], and not every value casts exactly "
            "(1 bad row; first at row 1: 1970-01-01 00:00:00.000001001)",
        ),
        (
            "date",
            pa.array([86_400_000 + 5], pa.date64()),
            "column 'v' has type date64[ms], not date32[day], and not every value casts exactly "
            "(1 bad row; first at row 0: 1970-01-02)",
        ),
    ],
    ids=[
        "timestamp-with-time-as-date",
        "fractional-float-as-int",
        "big-int-as-float",
        "uint64-overflow",
        "nanoseconds-as-microseconds",
        "date64-with-time",
    ],
)
def test_inexact_casts_are_refused(kind: str, values: pa.Array, message: str) -> None:
    refused(kind, values, message)


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("int64", pa.array([1, None], pa.int32()), [1, None]),
        ("int64", pa.array([255], pa.uint8()), [255]),
        ("int64", pa.array([3.0, None, -(2.0**63)]), [3, None, -(2**63)]),  # pandas' integers with gaps
        ("float64", pa.array([0.1], pa.float32()), [float(np.float32(0.1))]),
        ("float64", pa.array([float("nan")], pa.float32()), [float("nan")]),
        ("float64", pa.array([-(2**53), 2**53]), [-(2.0**53), 2.0**53]),
        ("string", pa.array(["a", None], pa.large_string()), ["a", None]),
        ("string", pa.array(["a"], pa.string_view()), ["a"]),
        ("bool", pa.array([None, None]), [None, None]),
        ("timestamp", pa.array([1], pa.timestamp("s")), [datetime(1970, 1, 1, 0, 0, 1)]),
        ("timestamp", pa.array([1_000], pa.timestamp("ns")), [datetime(1970, 1, 1, 0, 0, 0, 1)]),
        (
            "timestamp",
            pa.array([datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=2)))], pa.timestamp("us", tz="+02:00")),
            [datetime(2026, 1, 1, 3)],  # the same instant, in UTC
        ),
        ("timestamp", pa.array([date(2026, 1, 2)]), [datetime(2026, 1, 2)]),
        ("date", pa.array([datetime(2026, 1, 2)], pa.timestamp("us")), [date(2026, 1, 2)]),
        ("date", pa.array([86_400_000], pa.date64()), [date(1970, 1, 2)]),
    ],
    ids=[
        "int32",
        "uint8",
        "whole-floats",
        "float32",
        "float32-nan",
        "ints-to-2**53",
        "large-string",
        "string-view",
        "all-null",
        "seconds",
        "whole-nanoseconds",
        "zoned",
        "date-as-timestamp",
        "midnight-as-date",
        "date64",
    ],
)
def test_exact_casts_are_made(kind: str, values: pa.Array, expected: list) -> None:
    table = conform_chunk(pa.table({"v": values}), one_column(kind), 1)
    assert table.schema == one_column(kind).arrow_schema
    got = table.column("v").to_pylist()
    assert got == expected or (np.isnan(got[0]) and np.isnan(expected[0]))


def test_dictionary_encoded_text_stays_encoded() -> None:
    values = pa.array(["a", "b", "a"]).dictionary_encode()
    table = conform_chunk(pa.table({"v": values}), one_column("string"), 1)
    assert pa.types.is_dictionary(table.column("v").type)
    assert table.column("v").to_pylist() == ["a", "b", "a"]
    refused(
        "int64",
        pa.array(["7"]).dictionary_encode(),
        "column 'v' has type string, not int64 (1 bad row; first at row 0: '7')",
    )


def test_a_long_bad_value_is_quoted_short() -> None:
    refused(
        "int64",
        pa.array([None, "x" * 500]),
        f"column 'v' has type string, not int64 (1 bad row; first at row 1: '{'x' * 36}...)",
    )


@pytest.mark.parametrize(
    "chunk",
    [
        pa.table([pa.array(["p1"]), pa.array([1]), pa.array([2])], names=["ecid", "age", "age"]),
        pd.DataFrame([["p1", 1, 2]], columns=["ecid", "age", "age"]),
    ],
    ids=["arrow", "pandas"],
)
def test_a_duplicate_column_is_a_schema_mismatch(chunk: pa.Table | pd.DataFrame) -> None:
    spec = DatasetSpec("people", (Column("ecid", "string"), Column("age", "int64")))
    with pytest.raises(SchemaMismatchError, match=re.escape("dataset 'people', chunk 2: column 'age' appears 2 times")):
        conform_chunk(chunk, spec, 2)


def test_a_frame_arrow_cannot_convert_names_dataset_and_chunk() -> None:
    frame = pd.DataFrame({"v": [1, "x"]})
    with pytest.raises(SchemaMismatchError, match=r"^dataset 'kinds', chunk 1: .*Conversion failed for column v"):
        conform_chunk(frame, one_column("int64"), 1)


def test_nul_in_text_is_refused_only_where_the_engine_cannot_store_it() -> None:
    values = pa.array(["a", "b\x00c", None, "\x00"])
    assert conform_chunk(pa.table({"v": values}), one_column("string"), 3).column("v").to_pylist() == values.to_pylist()
    refused(
        "string",
        values,
        "column 'v' has text holding a NUL character, which this engine cannot store "
        "(2 bad rows; first at row 1: 'b\\x00c')",
        refuse_nul=True,
    )
    refused(
        "string",
        values.dictionary_encode(),
        "column 'v' has text holding a NUL character, which this engine cannot store "
        "(2 bad rows; first at row 1: 'b\\x00c')",
        refuse_nul=True,
    )


def test_the_first_null_identity_row_is_named() -> None:
    spec = DatasetSpec("people", (Column("ecid", "string"),), identity="ecid")
    with pytest.raises(
        SchemaMismatchError, match=re.escape("identity column 'ecid' is null in 2 rows (first at row 1)")
    ):
        conform_chunk(pa.table({"ecid": ["a", None, None]}), spec, 1)


#: Instants and days every backend stores and reads back exactly: the first and last of years 1 to 9999.
FAR_MOMENTS = moments(
    "0001-01-01T00:00:00",
    "0001-01-01T12:34:56.789012",
    "1677-09-21T00:12:43.145224",
    "2262-04-11T23:47:16.854776",
    "9999-12-31T23:59:59.999999",
)
FAR_DAYS = days("0001-01-01", "0001-12-31", "1677-09-21", "2262-04-12", "9999-12-31")
NOW, TODAY = moments("2026-01-01T00:00:00"), days("2026-01-01")
OUTSIDE = "has values outside the years 1 to 9999 (1 bad row; first at row 0: "
SPEC = DatasetSpec("far", (Column("n", "int64"), Column("seen_at", "timestamp"), Column("seen_on", "date")))


def test_far_timestamps_and_dates_round_trip_on_every_engine(platform) -> None:
    chunk = pa.table({"n": range(len(FAR_MOMENTS)), "seen_at": FAR_MOMENTS, "seen_on": FAR_DAYS})
    platform.ingest(SPEC, [chunk])
    read = pa.Table.from_batches(list(platform.read_batches('SELECT * FROM "far" ORDER BY n')))
    assert read.equals(chunk)
    frame = platform.query('SELECT * FROM "far" ORDER BY n')
    assert frame["seen_at"].tolist() == [pd.Timestamp(moment) for moment in FAR_MOMENTS.to_pylist()]
    assert frame["seen_on"].tolist() == FAR_DAYS.to_pylist()


@pytest.mark.parametrize(
    ("seen_at", "seen_on", "message"),
    [
        (moments("0000-12-31T23:59:59.999999"), TODAY, f"column 'seen_at' {OUTSIDE}0000-12-31 23:59:59.999999)"),
        (moments("-4714-11-24T00:00:00"), TODAY, f"column 'seen_at' {OUTSIDE}-4714-11-24 00:00:00.000000)"),
        (moments("10000-01-01T00:00:00"), TODAY, f"column 'seen_at' {OUTSIDE}10000-01-01 00:00:00.000000)"),
        (NOW, days("-0001-06-01"), f"column 'seen_on' {OUTSIDE}-0001-06-01)"),
        (NOW, days("10000-01-01"), f"column 'seen_on' {OUTSIDE}10000-01-01)"),
    ],
    ids=["year-0", "bc", "year-10000", "bc-date", "date-year-10000"],
)
def test_years_outside_1_to_9999_are_refused_alike_on_every_engine(platform, seen_at, seen_on, message) -> None:
    platform.ingest(SPEC, [pa.table({"n": [0], "seen_at": NOW, "seen_on": TODAY})])
    with pytest.raises(SchemaMismatchError) as caught:
        platform.ingest(SPEC, [pa.table({"n": [1], "seen_at": seen_at, "seen_on": seen_on})])
    assert str(caught.value) == f"dataset 'far', chunk 1: {message}"
    assert platform.handle("far").row_count == 1
    assert [batch.status for batch in platform.batches("far")] == ["failed", "success"]


def test_a_zoned_timestamp_is_stored_as_its_utc_instant(platform) -> None:
    spec = DatasetSpec("seen", (Column("seen_at", "timestamp"),))
    platform.ingest(spec, [pd.DataFrame({"seen_at": [datetime(2026, 1, 1, 5, tzinfo=UTC)]})])
    assert platform.query('SELECT seen_at FROM "seen"')["seen_at"].tolist() == [pd.Timestamp("2026-01-01 05:00:00")]
