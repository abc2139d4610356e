"""The SQL a real AEP sandbox receives, executed on Spark: the aep backend's rendering as a fourth engine.

With ``query_dialect: spark`` and ``flatten_paths: false`` (conf/aep/globals.yml) the aep backend sends
Query Service Spark SQL over nested XDM paths (``_acme.userid``), through the flat views it defines over
its XDM datasets' tables. The local emulator runs PostgreSQL over flattened columns, so that SQL runs
nowhere else; :class:`AEPRenderingOnSpark` runs it on a local Spark session:

- :meth:`~AEPRenderingOnSpark.load` turns a flat Arrow table into the nested XDM records the backend
  uploads (:func:`~aep_propensity.platform.aep.xdm.to_nested` over the chunk as
  :func:`~aep_propensity.platform.core.chunks.conform_chunk` checks it, written as the batch's Parquet
  file), registers it as the dataset's table (``<name>_xdm``) and defines the flat view with the
  backend's :func:`~aep_propensity.platform.aep.xdm.flat_view_sql`;
- :meth:`~AEPRenderingOnSpark.query`, :meth:`~AEPRenderingOnSpark.create_table_as` and
  :meth:`~AEPRenderingOnSpark.create_view` take canonical (DuckDB-dialect) SQL and run exactly what the
  backend sends: :func:`~aep_propensity.platform.core.sql.transpile` for interactive queries,
  :func:`~aep_propensity.platform.aep.queries.ctas_sql` (after
  :func:`~aep_propensity.platform.aep.queries.drop_table_sql`) and
  :func:`~aep_propensity.platform.aep.queries.view_sql` for the queries API, and
  :func:`~aep_propensity.platform.aep.queries.probe_sql` for a handle's columns;
- :meth:`~AEPRenderingOnSpark.audience_members` evaluates an audience's PQL rule as the project compiles
  it (:func:`~aep_propensity.platform.core.pql.compile_pql` over the profile source's fields, the
  backend's check before it stores a segment definition), its parameters bound as typed literals.

Each instance works in its own Spark session (``spark.newSession()``) and its own database under
``folder``, so instances sharing one JVM never see each other's tables. Query Service exposes an XDM
``date-time`` as ``TIMESTAMP`` (an instant), so the session reads the Parquet timestamps (written
without a zone, as the backend writes them) as ``TIMESTAMP`` rather than ``TIMESTAMP_NTZ``, in a
session time zone of UTC: the rendered SQL's timestamp literals are ``TIMESTAMP_NTZ``, which Spark
compares with a ``TIMESTAMP`` column in the session's zone, so in another zone window boundaries and
``CAST(ts AS DATE)`` move by its offset. Results come back as Arrow with timestamps naive in UTC, as
every backend of the platform stores them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from aep_propensity.platform.aep.catalog import XDM_SUFFIX
from aep_propensity.platform.aep.ingestion import _parquet_bytes
from aep_propensity.platform.aep.queries import ctas_sql, drop_table_sql, probe_sql, view_sql
from aep_propensity.platform.aep.xdm import flat_view_sql, mapping_for, to_nested
from aep_propensity.platform.core.chunks import conform_chunk
from aep_propensity.platform.core.port import (
    ARROW_TYPES,
    CANONICAL_DIALECT,
    INTERACTIVE_ROW_LIMIT,
    Column,
    DatasetSpec,
    Field,
    PlatformError,
    TableHandle,
    check_name,
)
from aep_propensity.platform.core.pql import compile_pql
from aep_propensity.platform.core.sql import identifier, literal, transpile

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_MISSING = object()

#: The Query Service dialect and path style of a real sandbox (conf/aep/globals.yml).
DIALECT = "spark"
FLATTEN_PATHS = False


class AEPRenderingOnSpark:
    """The aep backend's datasets, flat views and SQL, as a real sandbox would get them, run on Spark.

    ``shuffle_partitions`` is small by default: a test's tables are small, and every shuffle of Spark
    schedules that many tasks.

    Usage (another engine beside DuckDB, PostgreSQL and the emulator)::

        sandbox = AEPRenderingOnSpark(spark_session, tmp_path)
        sandbox.load("profiles", profiles_arrow, profiles_spec)        # nested XDM + flat view
        sandbox.create_table_as("training_features", canonical_sql)   # CTAS as the queries API gets it
        table = sandbox.query('SELECT * FROM "training_features"')    # a pyarrow.Table, flat columns
        rows = sandbox.read('SELECT * FROM "experience_events"')      # the same, past the row limit
        sandbox.close()
    """

    def __init__(
        self,
        spark: SparkSession,
        folder: Path,
        tenant: str = "acme",
        interactive_row_limit: int = INTERACTIVE_ROW_LIMIT,
        shuffle_partitions: int = 2,
    ) -> None:
        self.interactive_row_limit = interactive_row_limit
        self.spark = spark.newSession()
        self.spark.conf.set("spark.sql.parquet.inferTimestampNTZ.enabled", "false")
        self.spark.conf.set("spark.sql.session.timeZone", "UTC")
        self.spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
        self.folder = Path(folder)
        self.tenant = tenant
        self.database = f"sandbox_{uuid.uuid4().hex[:12]}"
        self.rendered: list[str] = []  # every statement sent, in order (what a sandbox would receive)
        self._parts: dict[str, int] = {}
        location = exp.Literal.string(str(self.folder / "warehouse")).sql(DIALECT)
        self.spark.sql(f"CREATE DATABASE {self._database()} LOCATION {location}")
        self.spark.catalog.setCurrentDatabase(self.database)

    def _database(self) -> str:
        """The instance's database, quoted."""
        return exp.to_identifier(check_name(self.database), quoted=True).sql(DIALECT)

    def _run(self, statement: str) -> None:
        """Run one statement in the sandbox's dialect, recording it."""
        self.rendered.append(statement)
        self.spark.sql(statement)

    # -- datasets ---------------------------------------------------------------------------------

    def table_of(self, name: str) -> str:
        """The Query Service table of the flat dataset ``name``'s XDM dataset (``profiles_xdm``)."""
        return check_name(f"{name}{XDM_SUFFIX}")

    def load(self, name: str, table: pa.Table, spec: DatasetSpec | None = None, replace: bool = True) -> str:
        """Ingest ``table`` (flat, ``spec``'s columns) as one batch of the XDM dataset ``<name>_xdm`` and
        (re)define the flat view ``name`` over it; appended after earlier batches unless ``replace``.
        Without ``spec``, the table's own columns (:func:`spec_of`). Returns the dataset's table name."""
        spec = spec_of(name, table.schema) if spec is None else spec
        if spec.name != name:
            raise ValueError(f"spec {spec.name!r} is not dataset {name!r}")
        mapping = mapping_for(spec, self.tenant)
        nested = to_nested(conform_chunk(table, spec, 1, refuse_nul=True), mapping)
        xdm_table = self.table_of(name)
        files = self.folder / "datasets" / xdm_table
        if replace:
            for old in files.glob("*.parquet"):
                old.unlink()
            self._parts[xdm_table] = 0
        files.mkdir(parents=True, exist_ok=True)
        self._parts[xdm_table] = self._parts.get(xdm_table, 0) + 1
        (files / f"part-{self._parts[xdm_table]:05d}.parquet").write_bytes(_parquet_bytes(nested))
        if replace:  # a replaced dataset may have other columns: its table is registered afresh
            self.spark.sql(f"DROP TABLE IF EXISTS {exp.to_identifier(xdm_table, quoted=True).sql(DIALECT)}")
        if self.spark.catalog.tableExists(xdm_table):
            self.spark.catalog.refreshTable(xdm_table)
        else:
            self.spark.catalog.createTable(xdm_table, path=str(files), source="parquet")
        self._run(flat_view_sql(mapping, xdm_table, FLATTEN_PATHS, DIALECT))
        return xdm_table

    # -- Query Service ----------------------------------------------------------------------------

    def query(self, canonical_sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run an interactive canonical-dialect query as the backend sends it; flat Arrow columns. ``?``
        placeholders take ``params`` as typed literals (:func:`bind`). As on the backend, a result of
        ``interactive_row_limit`` rows or more is an error (read it with :meth:`read`)."""
        table = self.read(bind(canonical_sql, tuple(params)) if params else canonical_sql)
        if table.num_rows >= self.interactive_row_limit:
            raise PlatformError(
                f"interactive query reached the interactive row limit of {self.interactive_row_limit:,}"
            )
        return table

    def read(self, canonical_sql: str) -> pa.Table:
        """Every row of a canonical-dialect query, rendered as the backend renders it (which reads results
        past the interactive row limit through a dataset export); flat Arrow columns."""
        statement = transpile(canonical_sql, DIALECT)
        self.rendered.append(statement)
        return naive_utc(self.spark.sql(statement).toArrow())

    def handle(self, name: str) -> TableHandle:
        """A handle (name, columns, row count) on a table or view, as the backend's ``handle`` gets it: its
        columns from the backend's probe, its row count from an interactive ``count(*)``."""
        statement = probe_sql(name, DIALECT)
        self.rendered.append(statement)
        columns = tuple(self.spark.sql(statement).columns)
        count = self.query(f"SELECT count(*) AS n FROM {identifier(name)}").column("n")[0].as_py()
        return TableHandle(name, columns, int(count))

    def create_table_as(self, name: str, canonical_sql: str) -> None:
        """``DROP TABLE IF EXISTS`` then ``CREATE TABLE ... AS``, as the queries API gets them."""
        self._run(drop_table_sql(name, DIALECT))
        self._run(ctas_sql(name, canonical_sql, DIALECT))

    def create_view(self, name: str, canonical_sql: str) -> None:
        """``CREATE OR REPLACE VIEW``, as the queries API gets it (``enriched_profiles``)."""
        self._run(view_sql(name, canonical_sql, DIALECT))

    # -- audiences --------------------------------------------------------------------------------

    def audience_members(self, rule: str, table: str, fields: Mapping[str, Field]) -> set[str]:
        """The ``ecid`` of every row of ``table`` the PQL ``rule`` selects, as the project compiles it."""
        compiled = compile_pql(rule, fields)
        predicate = bind(compiled.predicate, compiled.params)
        members = self.query(f"SELECT ecid FROM {identifier(table)} WHERE {predicate}")
        return set(members.column("ecid").to_pylist())

    def close(self) -> None:
        """Drop the instance's database and everything in it."""
        self.spark.catalog.setCurrentDatabase("default")
        self.spark.sql(f"DROP DATABASE IF EXISTS {self._database()} CASCADE")


def spec_of(name: str, schema: pa.Schema) -> DatasetSpec:
    """The :class:`DatasetSpec` of a flat Arrow schema of the platform's column types (no identity)."""
    logical = {str(arrow): kind for kind, arrow in ARROW_TYPES.items()}
    unknown = [f"{f.name}: {f.type}" for f in schema if str(f.type) not in logical]
    if unknown:
        raise ValueError(f"columns of no platform type: {unknown}")
    return DatasetSpec(name, tuple(Column(f.name, logical[str(f.type)]) for f in schema))  # type: ignore[arg-type]


def bind(predicate: str, params: tuple) -> str:
    """Canonical-dialect SQL (a predicate or a query) with its ``?`` placeholders replaced, in order, by
    typed literals (:func:`~aep_propensity.platform.core.sql.literal`): never pasted text."""
    values = iter(params)

    def replace(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Placeholder):
            return node
        value = next(values, _MISSING)
        if value is _MISSING:
            raise ValueError("fewer parameters than placeholders")
        return sqlglot.parse_one(literal(value), read=CANONICAL_DIALECT)

    bound = sqlglot.parse_one(predicate, read=CANONICAL_DIALECT).transform(replace)
    if next(values, _MISSING) is not _MISSING:
        raise ValueError("more parameters than placeholders")
    return bound.sql(CANONICAL_DIALECT)


def naive_utc(table: pa.Table) -> pa.Table:
    """``table`` with zoned timestamps as naive UTC ones (how the platform's backends store them)."""
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            column = column.cast(pa.timestamp(field.type.unit, tz="UTC")).cast(pa.timestamp(field.type.unit))
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)
