"""The spark backend's tables in a Spark session: registered by path from the ledger, read and written by Spark.

Spark's own catalog is not used: the in-memory one forgets tables when the process ends, and Hive's
embedded Derby metastore admits one process. Instead every statement first brings the session's
temporary views in step with the ledger (:meth:`SparkTables.sync`): a table is a view over the
Parquet folders the ledger names, read with the schema the ledger recorded; a view is its SQL.
Timestamps are UTC: Spark holds them as TIMESTAMP in a UTC session, and they leave as naive UTC,
as the platform stores them everywhere else.
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from ..core.port import DatasetSpec, PlatformError
from ..core.sql import transpile
from .session import spark_session
from .settings import SparkSettings
from .store import TableStore

logger = logging.getLogger(__name__)

# PySpark 4 warns on every session and Arrow UDF that it does not fully support pandas 3; this backend hands
# Spark no pandas object (rows cross as Arrow: createDataFrame is never given a DataFrame, reads use toArrow,
# scoring mapInArrow), so the warning does not apply to it.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int64": T.LongType(),
    "float64": T.DoubleType(),
    "bool": T.BooleanType(),
    "timestamp": T.TimestampType(),
    "date": T.DateType(),
}


def spark_schema(spec: DatasetSpec) -> T.StructType:
    """The Spark schema of a dataset's columns."""
    return T.StructType([T.StructField(c.name, SPARK_TYPES[c.type], True) for c in spec.columns])


def utc_arrow(table: pa.Table, spec: DatasetSpec) -> pa.Table:
    """A conformed chunk of ``spec`` in the exact Arrow types Spark takes: plain strings (no dictionaries),
    and timestamps marked UTC (they are naive UTC)."""
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in spec.arrow_schema
    ]
    return table.cast(pa.schema(fields))


def naive_arrow(table: pa.Table) -> pa.Table:
    """``table`` with its timestamps as naive UTC, as the platform returns them."""
    fields = [pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


#: What each session's temporary views show now: a data root and its ledger's entries, by ``id(session)``.
_REGISTERED: dict[int, tuple] = {}


class SparkTables:
    """One lazily started Spark session, whose temporary views follow the ledger's tables and views."""

    def __init__(self, config: SparkSettings, store: TableStore) -> None:
        self.config = config
        self.store = store
        self._session: SparkSession | None = None

    @property
    def session(self) -> SparkSession:
        """The Spark session, started on first use (a remote one that cannot be had is an error)."""
        if self._session is None:
            self._session = spark_session(self.config)
        return self._session

    def sync(self) -> None:
        """Make the session's views the ledger's tables and views (cheap when nothing changed)."""
        entries = self.store.entries()
        state = (
            self.store.root,
            tuple((name, kind, schema, tuple(parts), sql) for name, kind, schema, parts, _, sql in entries),
        )
        spark = self.session
        if _REGISTERED.get(id(spark)) == state:  # one process may hold platforms of several data roots
            return
        known = {name for name, *_ in entries}
        for row in spark.sql("SHOW VIEWS").collect():
            if row["isTemporary"] and row["viewName"] not in known:
                spark.catalog.dropTempView(row["viewName"])
        for name, kind, schema, parts, _, _ in entries:
            if kind == "table":
                self.frame(schema, parts).createOrReplaceTempView(name)
        for name, kind, _, _, _, sql in entries:
            if kind == "view":
                spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW `{name}` AS {sql}")
        _REGISTERED[id(spark)] = state

    def frame(self, schema: str | None, parts: list[str]) -> DataFrame:
        """The rows of ``parts`` with the recorded ``schema`` (a Spark schema as JSON)."""
        struct = T.StructType.fromJson(json.loads(schema or '{"type": "struct", "fields": []}'))
        if not parts:
            return self.session.createDataFrame([], struct)
        return self.session.read.schema(struct).parquet(*(self.store.url(part) for part in parts))

    def sql(self, sql: str, args: list[Any] | None = None) -> DataFrame:
        """A DataFrame of canonical-dialect ``sql`` (``?`` markers bound to ``args``), over the current tables."""
        self.sync()
        spark_sql = transpile(sql, "spark")
        try:
            return self.session.sql(spark_sql, args=args) if args else self.session.sql(spark_sql)
        except Exception as exc:
            raise PlatformError(f"Spark could not run the query: {_first_line(exc)}") from exc

    def write(self, frame: DataFrame, part: str) -> int:
        """Write ``frame`` as the Parquet folder ``part``; return its rows (from the files' footers)."""
        url = self.store.url(part)
        frame.write.mode("errorifexists").parquet(url)
        return self.session.read.parquet(url).count()

    def stream(self, frame: DataFrame, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream ``frame``'s rows as record batches with bounded memory (see :meth:`scratch`)."""
        with self.scratch(frame) as read:
            yield from read(batch_rows)

    @contextmanager
    def scratch(self, frame: DataFrame) -> Iterator[Callable[[int], Iterator[pa.RecordBatch]]]:
        """Have Spark write ``frame``'s rows once to a scratch folder (in one file, so its order holds) and
        give a function that reads them as record batches, as often as asked, until the block ends and the
        folder goes (a process that dies leaves it to recovery)."""
        read_id = uuid.uuid4().hex
        folder = f"{self.store.root}/tables/_reads/r-{read_id}"
        with self.store.hold(read_id):
            try:
                frame.coalesce(1).write.parquet(self.store.fs.unstrip_protocol(folder))

                def read(batch_rows: int) -> Iterator[pa.RecordBatch]:
                    dataset = pads.dataset(folder, filesystem=self.store.fs, format="parquet")
                    for batch in dataset.to_batches(batch_size=batch_rows):
                        yield from naive_arrow(pa.Table.from_batches([batch])).to_batches()

                yield read
            finally:
                if self.store.fs.exists(folder):
                    self.store.fs.rm(folder, recursive=True)

    def schema_of(self, frame: DataFrame) -> pa.Schema:
        """The Arrow schema of ``frame``'s rows, as :meth:`stream` yields them."""
        return naive_arrow(frame.limit(0).toArrow()).schema


def _first_line(exc: BaseException) -> str:
    """The first line of Spark's error (its messages carry the whole plan after it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
