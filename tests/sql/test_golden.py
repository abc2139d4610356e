"""The golden test of the platform's SQL: every template and inline query, on every engine, gives the same answer.

The SQL is written once in the canonical dialect (DuckDB's) and rendered for each engine by
:func:`aep_propensity.platform.core.sql.transpile`. Over the hand-built dataset of
:mod:`tests.sql.data`, each query must give on every engine of :data:`ENGINES`

- the same columns, in the same order, of the same logical kind (:func:`arrow_kind`,
  :func:`postgres_kind`): no DECIMAL, INTERVAL or zoned timestamp where DuckDB has a double, an
  integer or a plain timestamp. Integer widths count: a 32-bit integer is not a 64-bit one, since a
  table materialised from the query (CTAS) keeps the width and the exports carry it to the model;
- the same rows, compared as sorted lists (the order of rows is no part of the result), with
  floats equal within 1e-9 relative (or 1e-12 absolute, for values that are zero up to rounding).

DuckDB's answer is the reference. The queries are the ones the pipelines build, made by their own
node functions; which templates they render is recorded while they are built, so a template added to
``src/aep_propensity/sql`` that no query here renders fails :func:`test_every_template_is_covered`.
Audience rules cover every operator of the PQL subset (:func:`test_rules_cover_every_pql_operator`).

An engine is one entry in :data:`ENGINES`: a name and a factory taking the pytest request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import duckdb
import psycopg2
import psycopg2.extras
import pyarrow as pa
import pytest

import aep_propensity.sql as sql_templates
from aep_propensity.pipelines.activation.nodes import explore_score_histogram
from aep_propensity.pipelines.activation.params import ActivationParams
from aep_propensity.pipelines.evaluation.nodes import select_oracle_history
from aep_propensity.pipelines.featurization import nodes as featurization
from aep_propensity.pipelines.scoring.nodes import build_enriched_profiles
from aep_propensity.platform import TableHandle
from aep_propensity.platform.core import pql
from aep_propensity.platform.core.port import ARROW_TYPES, Column, ProfileSource
from aep_propensity.platform.core.sql import identifier, transpile
from aep_propensity.platform.local.postgres_engine import PostgresEngine
from benchmarks.common import catalog_spec
from tests.conftest import PG_DSN
from tests.sql import data

TEMPLATES = Path(sql_templates.__file__).parent
#: Floats agree within this relative difference...
RELATIVE = 1e-9
#: ...or this absolute one, for results that are zero up to rounding: a correlation that cancels
#: exactly comes out as +-1e-17 or so, differently on each engine (no relative bound can hold there).
ZERO = 1e-12

# -- logical kinds ---------------------------------------------------------------------------------


#: Arrow's type families as logical kinds, the first that matches; integers and floats keep their width.
_ARROW_KINDS: list[tuple[Callable[[pa.DataType], bool], Callable[[pa.DataType], str]]] = [
    (pa.types.is_integer, lambda t: f"int{t.bit_width}"),
    (pa.types.is_float64, lambda t: "float"),
    (pa.types.is_floating, lambda t: f"float{t.bit_width}"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t), lambda t: "string"),
    (pa.types.is_boolean, lambda t: "bool"),
    (pa.types.is_date, lambda t: "date"),
    (pa.types.is_timestamp, lambda t: "timestamp" if t.tz is None else "timestamptz"),
    (pa.types.is_decimal, lambda t: "decimal"),
    (lambda t: pa.types.is_duration(t) or pa.types.is_interval(t), lambda t: "interval"),
    (pa.types.is_null, lambda t: "null"),
]


def arrow_kind(type_: pa.DataType) -> str:
    """The logical kind of an Arrow type: ``int32``/``int64`` (widths kept), ``float``, ``string``,
    ``bool``, ``date``, ``timestamp`` (no zone) or a name that matches no other engine's kind
    (``decimal``, ``interval``, ``timestamptz``, ``float32``, ``arrow:<type>``)."""
    if pa.types.is_dictionary(type_):
        return arrow_kind(type_.value_type)
    return next((kind(type_) for matches, kind in _ARROW_KINDS if matches(type_)), f"arrow:{type_}")


#: PostgreSQL's type OIDs (pg_type) as logical kinds; any other OID is ``pg:<oid>``.
_PG_KINDS = {
    16: "bool",
    20: "int64",
    21: "int16",
    23: "int32",
    700: "float32",
    701: "float",
    1700: "decimal",
    25: "string",
    1043: "string",
    1042: "string",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
    1186: "interval",
}


def postgres_kind(oid: int) -> str:
    """The logical kind of a PostgreSQL result column's type OID."""
    return _PG_KINDS.get(oid, f"pg:{oid}")


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """A query's answer: its columns with their logical kinds, and its rows as Python values."""

    columns: tuple[tuple[str, str], ...]
    rows: list[tuple]

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Result:
        """The result held by an Arrow table."""
        columns = tuple((f.name, arrow_kind(f.type)) for f in table.schema)
        return cls(columns, [tuple(row.values()) for row in table.to_pylist()])


def _plain(value: Any) -> Any:
    """A value as the comparison sees it: zoned datetimes as naive UTC (their kind already differs)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _sort_key(row: tuple) -> tuple:
    """A total order over rows of mixed values (NULL first; floats by 9 significant digits so that
    rows differing in the last bits of a float sort alike on every engine)."""
    key = []
    for raw in row:
        value = _plain(raw)
        if value is None:
            key.append((0, ""))
        elif isinstance(value, float) and math.isnan(value):
            key.append((1, ""))
        elif isinstance(value, float | Decimal):
            key.append((2, float(f"{float(value):.9g}")))
        else:
            key.append((3, repr(type(value).__name__), value))
    return tuple(key)


def _same_value(expected: Any, actual: Any) -> bool:
    """Equal, floats within :data:`RELATIVE` (NaN equals NaN)."""
    expected, actual = _plain(expected), _plain(actual)
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isnan(expected) or math.isnan(actual):
            return math.isnan(expected) and math.isnan(actual)
        return math.isclose(expected, actual, rel_tol=RELATIVE, abs_tol=ZERO)
    return type(expected) is type(actual) and expected == actual


def differences(expected: Result, actual: Result) -> list[str]:
    """What differs between two results (empty when they agree)."""
    if expected.columns != actual.columns:
        if [name for name, _ in expected.columns] != [name for name, _ in actual.columns]:
            return [f"columns {[n for n, _ in actual.columns]} instead of {[n for n, _ in expected.columns]}"]
        kinds = zip(expected.columns, actual.columns, strict=True)
        return [f"column {want[0]} is {got[1]}, not {want[1]}" for want, got in kinds if want != got]
    if len(expected.rows) != len(actual.rows):
        return [f"{len(actual.rows)} rows instead of {len(expected.rows)}"]
    names = [name for name, _ in expected.columns]
    found = []
    for want, got in zip(sorted(expected.rows, key=_sort_key), sorted(actual.rows, key=_sort_key), strict=True):
        bad = [f"{n}={g!r} (want {w!r})" for n, w, g in zip(names, want, got, strict=True) if not _same_value(w, g)]
        if bad:
            found.append(f"row {dict(zip(names, want, strict=True))}: " + ", ".join(bad))
    return found[:5] + ([f"... {len(found) - 5} more rows"] if len(found) > 5 else [])


# -- engines ---------------------------------------------------------------------------------------


class Engine(Protocol):
    """What the golden test needs of an engine: load flat tables, define views, answer queries.

    Every SQL text it is given is canonical (DuckDB's dialect); the engine renders it as it would
    be rendered for it on the platform.
    """

    name: str

    def load(self, name: str, table: pa.Table) -> None:
        """Make ``table`` queryable as ``name``."""

    def define_view(self, name: str, sql: str) -> None:
        """Make the result of canonical ``sql`` queryable as ``name`` (as the platform's views are)."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """The answer to canonical ``sql`` with its ``?`` placeholders bound to ``params``."""

    def close(self) -> None:
        """Release what the engine holds."""


class DuckDBEngine:
    """An in-memory DuckDB database: the canonical dialect, unchanged."""

    name = "duckdb"

    def __init__(self) -> None:
        self.conn = duckdb.connect()

    def load(self, name: str, table: pa.Table) -> None:
        """A table created from the Arrow table."""
        self.conn.register("_incoming", table)
        self.conn.execute(f"CREATE TABLE {identifier(name)} AS SELECT * FROM _incoming")
        self.conn.unregister("_incoming")

    def define_view(self, name: str, sql: str) -> None:
        """``CREATE VIEW``."""
        self.conn.execute(f"CREATE VIEW {identifier(name)} AS {sql}")

    def run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Through DuckDB's Arrow result."""
        return Result.from_arrow(self.conn.sql(sql, params=list(params)).to_arrow_table())

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class PostgresSchemaEngine:
    """A fresh PostgreSQL schema, with the DDL types the platform's PostgreSQL engine stores."""

    name = "postgres"

    def __init__(self, schema: str) -> None:
        self.conn = psycopg2.connect(PG_DSN)
        self.conn.autocommit = True
        self.ddl = PostgresEngine(PG_DSN, schema)
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {identifier(schema)}")
            cur.execute(f"SET search_path TO {identifier(schema)}")

    def load(self, name: str, table: pa.Table) -> None:
        """``CREATE TABLE`` with the platform's column types, then the rows as bound parameters."""
        logical = {str(arrow): kind for kind, arrow in ARROW_TYPES.items()}
        columns = ", ".join(
            f"{identifier(f.name)} {self.ddl.sql_type(Column(f.name, logical[str(f.type)]))}" for f in table.schema
        )
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {identifier(name)} ({columns})")
            rows = [tuple(row.values()) for row in table.to_pylist()]
            psycopg2.extras.execute_values(cur, f"INSERT INTO {identifier(name)} VALUES %s", rows)

    def define_view(self, name: str, sql: str) -> None:
        """``CREATE VIEW`` in PostgreSQL's dialect."""
        with self.conn.cursor() as cur:
            cur.execute(transpile(f"CREATE VIEW {identifier(name)} AS {sql}", "postgres"))

    def run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Rows from psycopg2; kinds from the type OIDs PostgreSQL describes."""
        with self.conn.cursor() as cur:
            cur.execute(transpile(sql, "postgres"), list(params) or None)
            columns = tuple((d.name, postgres_kind(d.type_code)) for d in cur.description)
            return Result(columns, cur.fetchall())

    def close(self) -> None:
        """Close the connection (the schema is dropped by the ``pg_schema`` fixture)."""
        self.conn.close()


class SparkEngine:
    """A Spark session of its own (``newSession()``: same JVM, own views), SQL as ``transpile(sql, "spark")``.

    Flat tables become temporary views from Arrow; their timestamps are Spark's TIMESTAMP_NTZ, the
    type of DuckDB's and PostgreSQL's ``TIMESTAMP`` (a UTC instant stored without a zone, as the
    platform stores them), which Arrow's zone-less timestamps would otherwise not become.
    """

    name = "spark"

    def __init__(self, session: Any) -> None:
        self.session = session.newSession()
        # tens of rows: one shuffle partition each, or every query pays for the platform's default
        self.session.conf.set("spark.sql.shuffle.partitions", "1")

    def load(self, name: str, table: pa.Table) -> None:
        """A temporary view of the Arrow table."""
        from pyspark.sql import functions  # noqa: PLC0415 - PySpark is optional (the fixture skips without it)

        frame = self.session.createDataFrame(table)
        stamps = {
            f.name: functions.col(f.name).cast("timestamp_ntz") for f in table.schema if pa.types.is_timestamp(f.type)
        }
        frame.withColumns(stamps).createOrReplaceTempView(name)

    def define_view(self, name: str, sql: str) -> None:
        """A temporary view of the query."""
        self.session.sql(transpile(sql, "spark")).createOrReplaceTempView(name)

    def run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Through Spark's Arrow result; ``?`` placeholders are Spark's positional parameters."""
        frame = (
            self.session.sql(transpile(sql, "spark"), args=list(params))
            if params
            else self.session.sql(transpile(sql, "spark"))
        )
        return Result.from_arrow(frame.toArrow())

    def close(self) -> None:
        """Drop the session's views."""
        for view in self.session.catalog.listTables():
            if view.isTemporary:
                self.session.catalog.dropTempView(view.name)


class AEPSandboxEngine:
    """The SQL exactly as the aep backend renders it for a real sandbox (nested XDM paths behind its
    flat views, Query Service's Spark dialect), run on Spark by
    :class:`tests.sandbox_sql.spark_sandbox.AEPRenderingOnSpark`."""

    name = "aep_on_spark"

    def __init__(self, session: Any, folder: Path) -> None:
        from tests.sandbox_sql.spark_sandbox import AEPRenderingOnSpark  # noqa: PLC0415 - needs PySpark

        self.sandbox = AEPRenderingOnSpark(session, folder, data.TENANT)
        self.sandbox.spark.conf.set("spark.sql.shuffle.partitions", "1")  # as SparkEngine: tens of rows

    def load(self, name: str, table: pa.Table) -> None:
        """One batch of the dataset's XDM records, behind the backend's flat view (the catalog's spec)."""
        self.sandbox.load(name, table, catalog_spec(name))

    def define_view(self, name: str, sql: str) -> None:
        """``CREATE OR REPLACE VIEW`` as the queries API gets it."""
        self.sandbox.create_view(name, sql)

    def run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """An interactive query as the backend sends it (parameters bound as typed literals)."""
        return Result.from_arrow(self.sandbox.query(sql, params))

    def close(self) -> None:
        """Drop the sandbox's database."""
        self.sandbox.close()


def _duckdb(request: pytest.FixtureRequest) -> Engine:
    """The reference engine."""
    return DuckDBEngine()


def _postgres(request: pytest.FixtureRequest) -> Engine:
    """PostgreSQL in the fresh schema of ``pg_schema`` (skips loudly without a server)."""
    return PostgresSchemaEngine(request.getfixturevalue("pg_schema"))


def _spark(request: pytest.FixtureRequest) -> Engine:
    """Spark from the session-scoped ``spark_session`` fixture."""
    return SparkEngine(request.getfixturevalue("spark_session"))


def _aep_on_spark(request: pytest.FixtureRequest) -> Engine:
    """The aep backend's rendering on Spark, in a temporary folder of its own."""
    return AEPSandboxEngine(request.getfixturevalue("spark_session"), request.getfixturevalue("tmp_path"))


#: Every engine, the reference first: (name, factory). Adding an engine is adding an entry.
ENGINES: list[tuple[str, Callable[[pytest.FixtureRequest], Engine]]] = [
    ("duckdb", _duckdb),
    ("postgres", _postgres),
    ("spark", _spark),
    ("aep_on_spark", _aep_on_spark),
]

# -- the queries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One query of the platform: a name, canonical SQL and the values of its ``?`` placeholders."""

    name: str
    sql: str
    params: tuple = field(default=())


@contextmanager
def recorded_templates() -> Iterator[set[str]]:
    """The names of the templates (includes too) loaded from the project's Jinja environment meanwhile.

    The environment's own ``get_template`` does the work; it is only wrapped to note each name, so
    that coverage is what the node functions really render, not what a list here claims.
    """
    environment = sql_templates._TEMPLATES
    used: set[str] = set()
    original = environment.get_template

    def recording(name: Any, *args: Any, **kwargs: Any) -> Any:
        used.add(str(getattr(name, "name", name)))
        return original(name, *args, **kwargs)

    environment.get_template = recording  # an instance attribute: the class's method stays untouched
    try:
        yield used
    finally:
        del environment.get_template


EVENTS = TableHandle("experience_events", tuple(data.events().column_names), 1)
PROFILES = TableHandle("profiles", tuple(data.profiles().column_names), 1)
SCORES = TableHandle("propensity_scores", tuple(data.scores().column_names), 1)
ENRICHED = TableHandle("enriched_profiles", (), 1)
HISTOGRAM = ActivationParams(tenant=data.TENANT, histogram_bins=10)
FINE_HISTOGRAM = ActivationParams(tenant=data.TENANT, histogram_bins=1000)

#: Audience rules over the enriched profiles: every operator, both case flags, each field type.
RULES = [
    "_acme.propensity >= 0.5",
    "_acme.propensity < 0.25 or _acme.propensity > 0.75",
    "_acme.propensity <= 0.29 and _acme.propensity > -0.5",
    "_acme.propensity = 1",
    "_acme.propensityDecile != 0",
    "_acme.propensityDecile in [2, 5, 9]",
    "_acme.converted = true",
    "_acme.converted != false or _acme.propensity = 0.1",
    'person.gender = "female"',
    'person.gender in ["female", "nonbinary"]',
    'homeAddress.state notIn ["CA", "NY"]',
    'homeAddress.state < "a"',
    "homeAddress.state = homeAddress.state",
    "person.birthYear > 1990 and person.birthYear <= 2000",
    "loyalty.points > person.birthYear",
    "loyalty.points in [1000, 2500]",
    "loyalty.joinDate < date(2020, 1, 1)",
    "loyalty.joinDate >= date(2026, 3, 2)",
    "loyalty.joinDate != date(2020, 3, 2)",
    'personalEmail.address.startsWith("a")',
    'personalEmail.address.doesNotStartWith("A", false)',
    'personalEmail.address.endsWith("@example.com")',
    'personalEmail.address.doesNotEndWith(".COM", false)',
    'personalEmail.address.endsWith("")',
    'personalEmail.address.contains("zoë")',
    'personalEmail.address.contains("ZOË", false)',
    'personalEmail.address.startsWith("B", true)',
    'personalEmail.address.contains("")',
    "loyalty.tier.isNull()",
    'loyalty.tier.isNotNull() and not (loyalty.tier = "gold")',
    '!(_acme.propensity >= 0.1) or loyalty.tier = "platinum"',
    'not not loyalty.tier notIn ["gold"]',
]


def queries() -> list[Query]:
    """Every query the platform runs over the tables, built by the pipelines' own node functions."""
    features, cmle, time_ = data.FEATURES, data.CMLE_FEATURES, data.TIME
    built = [
        Query("pit_training", featurization.build_training_features(EVENTS, PROFILES, features, time_)),
        Query("pit_scoring", featurization.build_scoring_features(EVENTS, PROFILES, features, time_)),
        Query("cmle_training", featurization.build_training_features(EVENTS, PROFILES, cmle, time_)),
        Query("cmle_scoring", featurization.build_scoring_features(EVENTS, PROFILES, cmle, time_)),
        Query("data_quality", featurization.report_data_quality(EVENTS, features, time_)),
        Query("eda_overview", featurization.explore_overview(EVENTS, PROFILES)),
        Query("eda_funnel", featurization.explore_funnel(EVENTS)),
        Query("eda_events_per_day", featurization.explore_events_per_day(EVENTS)),
        Query("eda_precedence", featurization.explore_precedence(EVENTS)),
        Query("eda_correlation", featurization.explore_correlation(EVENTS, features)),
        Query("oracle_history", select_oracle_history(EVENTS, time_)),
        Query("enriched_profiles", build_enriched_profiles(PROFILES, SCORES)),
        Query("score_histogram", explore_score_histogram(ENRICHED, HISTOGRAM)),
        Query("score_histogram_fine", explore_score_histogram(ENRICHED, FINE_HISTOGRAM)),
    ]
    source = ProfileSource.from_config({"table": ENRICHED.name, "tenant": data.TENANT, "fields": data.PROFILE_FIELDS})
    for index, rule in enumerate(RULES):
        compiled = pql.compile_pql(rule, source.fields)
        # the members' selection of an audience evaluation (local segmentation's INSERT ... SELECT)
        members = f"SELECT ecid FROM {identifier(source.table)} WHERE {compiled.predicate}"
        built.append(Query(f"audience_{index:02d}", members, compiled.params))
    # the platform's wrappers around any query: the row count before a read, the schema probe
    built.append(Query("count_wrapper", f"SELECT count(*) AS n FROM ({built[0].sql}) AS counted"))
    built.append(Query("schema_probe", f"SELECT * FROM ({built[2].sql}) AS q LIMIT 0"))
    return built


def build_queries() -> tuple[list[Query], set[str]]:
    """The queries, and the templates their building rendered."""
    with recorded_templates() as used:
        built = queries()
    return built, used


# -- the tests -------------------------------------------------------------------------------------


def test_every_template_is_covered() -> None:
    """Each file of the templates folder is rendered by some query here (a new one must be added)."""
    _, used = build_queries()
    on_disk = {path.name for path in TEMPLATES.glob("*.sql")}
    assert on_disk, f"no templates found in {TEMPLATES}"
    assert on_disk - used == set(), f"templates no golden query renders: {sorted(on_disk - used)}"


def _operators(rule: str) -> set[str]:
    """The operators, keywords and functions a rule uses (from the compiler's own tokens)."""
    found = set()
    for token in pql._tokenize(rule):
        if token.kind == "symbol":
            found.add(token.text)
        elif token.kind == "name":
            found.add(token.text.rsplit(".", 1)[-1])
    return found


def test_rules_cover_every_pql_operator() -> None:
    """The audience rules use every comparison, list, string and null operator and every connective."""
    wanted = (
        set(pql._COMPARISONS)
        | set(pql._STRING_FUNCTIONS)
        | set(pql._NULL_CHECKS)
        | {"in", "notIn", "and", "or", "not", "!", "true", "false", "date", "("}
    )
    used = set().union(*map(_operators, RULES))
    assert wanted - used == set(), f"no golden rule uses {sorted(wanted - used)}"
    flags = {rule.endswith(", false)") for rule in RULES if '("' in rule}
    assert flags == {True, False}, "rules must use string functions both case-sensitive and case-blind"


def test_every_query_agrees_on_every_engine(request: pytest.FixtureRequest) -> None:
    """Every query gives the reference engine's columns, kinds and rows on every other engine."""
    built, _ = build_queries()
    tables = {"experience_events": data.events(), "profiles": data.profiles(), "propensity_scores": data.scores()}
    enriched = next(query for query in built if query.name == "enriched_profiles")
    answers: dict[str, dict[str, Result | str]] = {}
    for name, factory in ENGINES:
        engine = factory(request)
        try:
            for table_name, table in tables.items():
                engine.load(table_name, table)
            engine.define_view(ENRICHED.name, enriched.sql)
            answers[name] = {}
            for query in built:
                try:
                    answers[name][query.name] = engine.run(query.sql, query.params)
                except Exception as exc:  # reported with every other difference below
                    answers[name][query.name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        finally:
            engine.close()
    reference, *others = (name for name, _ in ENGINES)
    problems = []
    for query in built:
        expected = answers[reference][query.name]
        if isinstance(expected, str):
            problems.append(f"{query.name} on {reference}: {expected}")
            continue
        for other in others:
            actual = answers[other][query.name]
            found = [actual] if isinstance(actual, str) else differences(expected, actual)
            problems.extend(f"{query.name} on {other}: {problem}" for problem in found)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems)
    # the dataset is not degenerate: the queries return rows (the schema probe aside)
    empty = [q.name for q in built if q.name != "schema_probe" and not answers[reference][q.name].rows]
    assert not empty, f"queries with no rows on {reference}: {empty}"
