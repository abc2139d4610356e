"""Conforming ingested chunks to a dataset's schema: one rule for every backend."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .port import DatasetSpec, SchemaMismatchError

#: The first and last instant and day that every backend stores and reads back exactly: years 1 to 9999.
FIRST_MOMENT, LAST_MOMENT = datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999_999)
FIRST_DAY, LAST_DAY = date(1, 1, 1), date(9999, 12, 31)

_BOUNDS: dict[pa.DataType, tuple[pa.Scalar, pa.Scalar]] = {
    pa.timestamp("us"): (pa.scalar(FIRST_MOMENT, pa.timestamp("us")), pa.scalar(LAST_MOMENT, pa.timestamp("us"))),
    pa.date32(): (pa.scalar(FIRST_DAY, pa.date32()), pa.scalar(LAST_DAY, pa.date32())),
}

#: The integers a numeric target holds exactly: all of int64's; float64's run of consecutive integers.
_EXACT_INTEGERS: dict[pa.DataType, tuple[int, int]] = {
    pa.int64(): (-(2**63), 2**63 - 1),
    pa.float64(): (-(2**53), 2**53),
}

_FLOATS = (pa.float32(), pa.float64())

#: Characters of a bad value quoted in an error.
_EXCERPT = 40


def conform_chunk(
    chunk: pa.Table | pa.RecordBatch | pd.DataFrame, spec: DatasetSpec, index: int, *, refuse_nul: bool = False
) -> pa.Table:
    """Check a chunk against the dataset's schema and return it as an Arrow table in column order.

    Casts are exact or refused. A column whose Arrow type is not the dataset's is cast only within
    its kind, and only if every value casts back unchanged:

    - any integer type to int64 within int64's range, and whole floats (pandas' integers with gaps);
    - float32 to float64, and integers to float64 within ±2**53 (where every integer is exact);
    - large_string and string_view to string; dictionary-encoded values as their values (text with
      the dataset's type stays encoded);
    - a timestamp of any unit to microseconds if no sub-microsecond digit is lost; a zoned timestamp
      to its instant in UTC (stored naive); a date to the timestamp of its midnight;
    - a naive timestamp at midnight to its date; date64 holding whole days to date32;
    - a column of nulls only to any type.

    Everything else is refused: integers as booleans (``-7`` is not ``true``), text as a number,
    boolean, timestamp or date (nothing is parsed: ``'007'`` is not ``7``), numbers or booleans as
    text, booleans as integers, zoned timestamps as dates (the day depends on a zone), decimals.

    Timestamps and dates must lie in the years 1 to 9999, the range every backend stores and reads
    back exactly (AEP's Spark-based data lake and Python's ``datetime`` hold no other; PostgreSQL's
    text COPY cannot read back BC years from Arrow's text), so such a batch fails alike everywhere.
    ``refuse_nul`` is for an engine that cannot store a NUL character in text (PostgreSQL): such
    text is then refused too, with the same kind of error on every engine that passes it.

    Raises :class:`SchemaMismatchError` for a duplicate, missing or unexpected column, a refused or
    inexact cast, a value out of range or a null identity, naming the dataset, the chunk (``index``),
    the column, the number of bad rows and the first of them (its row in the chunk and a short excerpt).
    """
    where = f"dataset {spec.name!r}, chunk {index}"
    table = _as_table(chunk, where)
    _check_names(table.column_names, spec, where, table.num_rows)
    columns = [
        _conform_column(table.column(field.name), field.type, f"{where}: column {field.name!r}", refuse_nul)
        for field in spec.arrow_schema
    ]
    fields = [field.with_type(column.type) for field, column in zip(spec.arrow_schema, columns, strict=True)]
    conformed = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    if spec.identity is not None:
        nulls = conformed.column(spec.identity).is_null()
        count = pc.sum(nulls).as_py() or 0
        if count:
            raise SchemaMismatchError(
                f"{where}: identity column {spec.identity!r} is null in {count} rows "
                f"(first at row {pc.index(nulls, True).as_py()})"
            )
    return conformed


def _as_table(chunk: pa.Table | pa.RecordBatch | pd.DataFrame, where: str) -> pa.Table:
    """``chunk`` as an Arrow table; a frame that Arrow cannot convert is refused, naming ``where``."""
    if isinstance(chunk, pd.DataFrame):
        _check_unique([str(name) for name in chunk.columns], where)  # Arrow's own complaint names no dataset
        try:
            return pa.Table.from_pandas(chunk, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise SchemaMismatchError(f"{where}: {exc}") from None
    if isinstance(chunk, pa.RecordBatch):
        return pa.Table.from_batches([chunk])
    if isinstance(chunk, pa.Table):
        return chunk
    raise SchemaMismatchError(f"{where}: expected an Arrow table or DataFrame, got {type(chunk).__name__}")


def _check_unique(names: list[str], where: str) -> None:
    """Raise if a column name appears more than once."""
    repeated = [(name, times) for name, times in Counter(names).items() if times > 1]
    if repeated:
        name, times = repeated[0]
        raise SchemaMismatchError(f"{where}: column {name!r} appears {times} times")


def _check_names(names: list[str], spec: DatasetSpec, where: str, rows: int) -> None:
    """Raise for a duplicate, missing or unexpected column."""
    _check_unique(names, where)
    missing = [name for name in spec.column_names if name not in names]
    if missing:
        raise SchemaMismatchError(f"{where}: missing column {missing[0]!r} ({rows} rows)")
    extra = [name for name in names if name not in spec.column_names]
    if extra:
        raise SchemaMismatchError(f"{where}: unexpected column {extra[0]!r} ({rows} rows)")


def _conform_column(column: pa.ChunkedArray, target: pa.DataType, what: str, refuse_nul: bool) -> pa.ChunkedArray:
    """``column`` as ``target`` by the cast policy, checked storable; ``what`` names it in errors."""
    encoded = pa.types.is_dictionary(column.type)
    plain = column.cast(column.type.value_type) if encoded else column
    if plain.type != target:
        plain = _cast_exactly(plain, target, what)
    _check_storable(plain, what, refuse_nul)
    return column if encoded and column.type.value_type == target else plain


def _cast_exactly(column: pa.ChunkedArray, target: pa.DataType, what: str) -> pa.ChunkedArray:
    """``column`` cast to ``target`` if the policy allows the cast and every value survives it, else raise."""
    if pa.types.is_null(column.type):
        return column.cast(target)
    problem = f"{what} has type {column.type}, not {target}"
    if not _castable(column.type, target):
        _refuse_rows(problem, column.is_valid(), column)
    cast = pc.cast(column, target, safe=False)
    _refuse_rows(f"{problem}, and not every value casts exactly", _inexact(column, cast), column)
    return cast


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether the policy lets ``source`` values be cast to ``target`` (each is then checked to be exact)."""
    types = pa.types
    if target in (pa.int64(), pa.float64()):
        return types.is_integer(source) or source in _FLOATS
    if target == pa.string():
        return _is_text(source)
    if types.is_timestamp(target):
        return types.is_timestamp(source) or types.is_date(source)
    if types.is_date(target):
        return types.is_date(source) or (types.is_timestamp(source) and source.tz is None)
    return False  # a boolean is only ever a boolean


def _inexact(column: pa.ChunkedArray, cast: pa.ChunkedArray) -> pa.ChunkedArray:
    """Which rows' unsafe ``cast`` is not exactly their value in ``column``: the cast back differs (a
    truncated time, fraction or digit), or an integer lies outside what the target holds exactly (which
    also catches a wrap-around that casts back unchanged)."""
    back = pc.cast(cast, column.type, safe=False)
    inexact = pc.not_equal(back, column)
    if column.type in _FLOATS:  # NaN is not equal to itself, yet casts exactly
        inexact = pc.and_(inexact, pc.invert(pc.and_(pc.is_nan(back), pc.is_nan(column))))
    if pa.types.is_integer(column.type):
        low, high = _EXACT_INTEGERS[cast.type]
        source_low, source_high = _integer_range(column.type)
        if low > source_low:
            inexact = pc.or_(inexact, pc.less(column, pa.scalar(low, column.type)))
        if high < source_high:
            inexact = pc.or_(inexact, pc.greater(column, pa.scalar(high, column.type)))
    return pc.fill_null(inexact, False)


def _integer_range(integer: pa.DataType) -> tuple[int, int]:
    """The least and greatest value of an Arrow integer type."""
    bits = integer.bit_width
    if pa.types.is_signed_integer(integer):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _check_storable(column: pa.ChunkedArray, what: str, refuse_nul: bool) -> None:
    """Refuse timestamps and dates outside the years 1 to 9999, and (``refuse_nul``) text holding a NUL."""
    bounds = _BOUNDS.get(column.type)
    if bounds is not None:
        outside = pc.or_(pc.less(column, bounds[0]), pc.greater(column, bounds[1]))
        _refuse_rows(f"{what} has values outside the years 1 to 9999", pc.fill_null(outside, False), column)
    if refuse_nul and column.type == pa.string():
        nul = pc.fill_null(pc.match_substring(column, "\x00"), False)
        _refuse_rows(f"{what} has text holding a NUL character, which this engine cannot store", nul, column)


def _refuse_rows(problem: str, bad: pa.ChunkedArray, column: pa.ChunkedArray) -> None:
    """Raise :class:`SchemaMismatchError` with ``problem``, the number of ``bad`` rows and the first of
    them, if any row is bad."""
    count = pc.sum(bad).as_py() or 0
    if count:
        row = pc.index(bad, True).as_py()
        rows = "1 bad row" if count == 1 else f"{count} bad rows"
        raise SchemaMismatchError(f"{problem} ({rows}; first at row {row}: {_excerpt(column, row)})")


def _excerpt(column: pa.ChunkedArray, row: int) -> str:
    """The value at ``row`` as Arrow prints it (so years beyond Python's ``datetime`` print too), text
    quoted, cut to a short excerpt."""
    value = column.slice(row, 1)
    try:
        text = pc.cast(value, pa.string())[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # lists, structs, binary that is not UTF-8
        text = str(value[0])
    if _is_text(column.type):
        text = repr(text)
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "..."


def _is_text(kind: pa.DataType) -> bool:
    """Whether ``kind`` is one of Arrow's text types."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
