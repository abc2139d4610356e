"""Conforming ingested chunks to a dataset's schema: one rule for every backend."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .port import DatasetSpec, SchemaMismatchError


def conform_chunk(chunk: pa.Table | pa.RecordBatch | pd.DataFrame, spec: DatasetSpec, index: int) -> pa.Table:
    """Check a chunk against the dataset's schema and return it as an Arrow table in column order.

    Raises :class:`SchemaMismatchError` naming the dataset, chunk, column and number of bad rows
    for a missing or unexpected column, a type that cannot be stored losslessly, or a null identity.
    """
    where = f"dataset {spec.name!r}, chunk {index}"
    if isinstance(chunk, pd.DataFrame):
        chunk = pa.Table.from_pandas(chunk, preserve_index=False)
    elif isinstance(chunk, pa.RecordBatch):
        chunk = pa.Table.from_batches([chunk])
    if not isinstance(chunk, pa.Table):
        raise SchemaMismatchError(f"{where}: expected an Arrow table or DataFrame, got {type(chunk).__name__}")
    missing = [name for name in spec.column_names if name not in chunk.column_names]
    if missing:
        raise SchemaMismatchError(f"{where}: missing column {missing[0]!r} ({chunk.num_rows} rows)")
    extra = [name for name in chunk.column_names if name not in spec.column_names]
    if extra:
        raise SchemaMismatchError(f"{where}: unexpected column {extra[0]!r} ({chunk.num_rows} rows)")
    columns, fields = [], []
    for field in spec.arrow_schema:
        column = chunk.column(field.name)
        stored_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if stored_type != field.type:
            try:
                column = pc.cast(column, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad = _count_uncastable(column, field.type)
                raise SchemaMismatchError(
                    f"{where}: column {field.name!r} has type {column.type}, not {field.type} ({bad} bad rows)"
                ) from None
        columns.append(column)
        fields.append(field.with_type(column.type))  # dictionary-encoded columns stay encoded
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    if spec.identity is not None:
        nulls = table.column(spec.identity).null_count
        if nulls:
            raise SchemaMismatchError(f"{where}: identity column {spec.identity!r} is null in {nulls} rows")
    return table


def _count_uncastable(column: pa.ChunkedArray, target: pa.DataType) -> int:
    """How many non-null values of ``column`` cannot be cast safely to ``target`` (an error path)."""
    bad_values = 0
    counts = pc.value_counts(column.drop_null())
    for item in counts:
        try:
            pc.cast(pa.array([item["values"].as_py()], column.type), target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            bad_values += item["counts"].as_py()
    return bad_values
