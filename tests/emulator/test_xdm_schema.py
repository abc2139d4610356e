"""Flattening nested XDM by schema, and the fault configuration (no server needed)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from aep_propensity.emulator.config import load_faults
from aep_propensity.emulator.xdm_schema import (
    BATCH_COLUMN,
    XdmError,
    arrow_to_paths,
    coerce,
    column_name,
    columns_of,
    conform,
    json_to_paths,
    parse_json_records,
)
from aep_propensity.platform.core.port import Column

LEAVES = {"_acme.userid": "string", "timestamp": "date-time", "loyalty.joinDate": "date", "loyalty.points": "number"}


def test_column_names_follow_flatten() -> None:
    """Paths join with ``_`` and lower-case."""
    assert column_name("web.webPageDetails.pageViews.value") == "web_webpagedetails_pageviews_value"
    assert [c.name for c in columns_of(LEAVES)] == ["_acme_userid", "loyalty_joindate", "loyalty_points", "timestamp"]


def test_json_and_parquet_flatten_to_the_same_rows() -> None:
    """ISO strings and epoch milliseconds become timestamps and dates; missing leaves are null."""
    columns = [*columns_of(LEAVES), Column(BATCH_COLUMN, "string")]
    records = parse_json_records(
        b'{"_acme": {"userid": "a"}, "timestamp": "2024-01-02T03:04:05Z", "loyalty": {"joinDate": "2020-05-06"}}\n'
        b'{"_acme": {"userid": "b"}, "timestamp": 1704164645000, "loyalty": {"points": 3}}'
    )
    from_json = conform(json_to_paths(records[:1]), LEAVES, columns, "b1").to_pylist()[0]
    assert from_json["timestamp"] == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert from_json["loyalty_joindate"] == dt.date(2020, 5, 6) and from_json["loyalty_points"] is None
    epoch = conform(json_to_paths(records[1:]), LEAVES, columns, "b1").to_pylist()[0]
    assert epoch["timestamp"] == dt.datetime(2024, 1, 2, 3, 4, 5) and epoch[BATCH_COLUMN] == "b1"
    nested = pa.Table.from_pylist([{"_acme": {"userid": "c"}, "loyalty": {"points": 2.5}}])
    assert conform(arrow_to_paths(nested), LEAVES, columns, "b2").to_pylist()[0]["loyalty_points"] == 2.5


def test_undefined_leaf_and_bad_type_name_the_path() -> None:
    """A leaf the schema lacks, or a value of the wrong type, is an error naming the path."""
    columns = columns_of(LEAVES)
    with pytest.raises(XdmError, match="_acme.other"):
        conform(json_to_paths([{"_acme": {"other": 1}}]), LEAVES, columns, "b")
    with pytest.raises(XdmError, match="loyalty.points"):
        conform(json_to_paths([{"loyalty": {"points": "many"}}]), LEAVES, columns, "b")


def test_faults_from_inline_json() -> None:
    """Fault switches load from inline JSON; unknown switches are refused."""
    assert load_faults('{"rate_limit_every": 3, "retry_after": 1}') == {"rate_limit_every": 3, "retry_after": 1}
    with pytest.raises(ValueError, match="unknown fault"):
        load_faults('{"chaos": true}')


@pytest.mark.parametrize(
    ("values", "logical"),
    [
        (pa.array([1, -7]), "bool"),  # an integer is no boolean
        (pa.array(["007"]), "int64"),  # text is not parsed into a number
        (pa.array([2**53 + 1]), "float64"),  # a digit would be lost
        (pa.array(["2026-08-03T10:30:00Z"]), "date"),  # the time of day would be dropped
    ],
    ids=["int-as-bool", "text-as-number", "lost-digit", "time-dropped"],
)
def test_lossy_casts_are_refused(values, logical):
    with pytest.raises(XdmError, match="field 'x' .* cannot be stored as"):
        coerce(values, logical, "x")


def test_exact_casts_are_kept():
    assert coerce(pa.array([1, 2], pa.int32()), "int64", "x").to_pylist() == [1, 2]
    assert coerce(pa.array(["2026-08-03T00:00:00Z"]), "date", "x").to_pylist() == [dt.date(2026, 8, 3)]
