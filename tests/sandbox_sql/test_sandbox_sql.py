"""The SQL a real AEP sandbox would receive, run on Spark, against the embedded (DuckDB) run on the same data.

3,000 simulated people (the project's simulator, the test environment's size) and two scoring runs are
loaded on both engines: on Spark as the aep backend's nested XDM datasets behind its flat views
(:class:`~tests.sandbox_sql.spark_sandbox.AEPRenderingOnSpark`), on DuckDB through the local platform.
The featurization nodes' SQL (training and scoring features of both feature sets, data quality,
EDA), the evaluation pipeline's oracle history, the scoring pipeline's ``enriched_profiles`` view,
the activation pipeline's score histogram and the audiences (the activation parameters' tiers and
rules, as PQL) then run on both, and every result must be the same: same columns and rows, same
logical types (integer widths kept), floats within 1e-9 relative.

Audiences: AEP evaluates a segment definition's PQL itself; the backend only compiles it
(:func:`~aep_propensity.platform.core.pql.compile_pql`) to refuse a bad rule. Here the compiled
predicate runs on Spark over the flat ``enriched_profiles`` view, against the embedded platform's
own evaluation (upserted and evaluated audiences, read from ``audience_membership``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from aep_propensity.parameters import TimeDesign
from aep_propensity.pipelines.activation import nodes as activation
from aep_propensity.pipelines.activation.params import ActivationParams
from aep_propensity.pipelines.evaluation.nodes import select_oracle_history
from aep_propensity.pipelines.featurization import nodes as featurization
from aep_propensity.pipelines.featurization.params import FeaturizationParams
from aep_propensity.pipelines.scoring.nodes import build_enriched_profiles
from aep_propensity.platform import (
    AudienceDefinition,
    ProfileSource,
    TableHandle,
    identifier,
    literal,
    make_platform,
)
from aep_propensity.platform.aep.destinations import DELIVERIES
from aep_propensity.platform.aep.queries import count_sql
from aep_propensity.platform.aep.segmentation import AUDIENCES
from aep_propensity.platform.core.port import PlatformError
from aep_propensity.platform.local import LocalPlatform
from benchmarks.common import base_parameters, catalog_spec
from tests.conftest import platform_config
from tests.pipelines.data_generation.test_pipeline import generated_tables, make_params

from .spark_sandbox import AEPRenderingOnSpark

PROJECT = Path(__file__).resolve().parents[2]
TEST_CONF = PROJECT / "conf" / "test"
EVENTS, PROFILES, SCORES = (catalog_spec(name) for name in ("experience_events", "profiles", "propensity_scores"))
TENANT = yaml.safe_load((PROJECT / "conf/base/globals.yml").read_text())["tenant"]
NOW = datetime(2026, 10, 12, 3, 4, 5, 678_901)
PROFILE_FIELDS = yaml.safe_load((PROJECT / "conf/base/globals.yml").read_text())["profile_fields"]

#: Rules beyond the tiers, exercising every PQL form over every field type of the profile source.
EXTRA_RULES = [
    {"name": "gold_likely", "rule": f'loyalty.tier = "gold" and _{TENANT}.propensity >= 0.05'},
    {"name": "states", "rule": 'homeAddress.state in ["CA", "NY", "TX"] or person.gender != "female"'},
    {"name": "joined_early", "rule": "loyalty.joinDate < date(2018, 6, 1) and not loyalty.points > 2000"},
    {"name": "mail", "rule": 'personalEmail.address.startsWith("synthetic-user-1") and person.birthYear >= 1970'},
    {"name": "mail_end", "rule": 'personalEmail.address.endsWith("0@ADOBE.COM", false)'},
    {"name": "contains", "rule": f'personalEmail.address.contains("99") or _{TENANT}.propensityDecile = 10'},
    {"name": "unscored", "rule": f"_{TENANT}.propensity.isNull() and _{TENANT}.converted = false"},
    {"name": "converted", "rule": f"_{TENANT}.converted = true"},
]


def _test_parameters(key: str) -> dict:
    """conf/base's ``key`` parameters with the test environment's overrides (conf/test) merged over them."""
    overrides = TEST_CONF / f"parameters_{key}.yml"
    extra = (yaml.safe_load(overrides.read_text()) or {}).get(key, {}) if overrides.exists() else {}
    return base_parameters(key, **extra)


GENERATION = make_params(**_test_parameters("data_generation"))
FEATURES = FeaturizationParams(**_test_parameters("featurization"))
TIME = TimeDesign(**_test_parameters("time_design"))
ACTIVATION = ActivationParams(**{**_test_parameters("activation"), "tenant": TENANT, "rules": EXTRA_RULES})


def scores_of(profiles: pa.Table, run: int, scored_at: datetime) -> pa.Table:
    """A scoring run's rows (deterministic per run): most profiles scored, some converted (no score),
    some left out, so ``enriched_profiles`` has every case."""
    rng = np.random.default_rng([20261127, run])
    ecids = profiles.column("ecid").to_numpy(zero_copy_only=False)
    kept = rng.random(len(ecids)) < 0.95
    ecids = ecids[kept]
    converted = rng.random(len(ecids)) < 0.05
    score = np.round(rng.beta(1.2, 12.0, len(ecids)), 6)
    decile = np.minimum(10, 1 + np.floor(score * 10)).astype(np.int64)
    return pa.table(
        {
            "ecid": pa.array(ecids, pa.string()),
            "score": pa.array(score, pa.float64(), mask=converted),
            "decile": pa.array(decile, pa.int64(), mask=converted),
            "converted": pa.array(converted),
            "model_id": pa.array([f"model-{run}"] * len(ecids)),
            "run_id": pa.array([f"run-{run}"] * len(ecids)),
            "scored_at": pa.array([scored_at] * len(ecids), pa.timestamp("us")),
        }
    )


@pytest.fixture(scope="module")
def world() -> dict[str, list[pa.Table]]:
    """The raw datasets as batches: 3,000 simulated people's profiles and events, and two scoring runs."""
    events, profiles = generated_tables(GENERATION)
    assert profiles.num_rows == 3_000
    runs = [scores_of(profiles, 1, datetime(2026, 10, 12, 1)), scores_of(profiles, 2, datetime(2026, 10, 12, 2))]
    return {"profiles": [profiles], "experience_events": [events], "propensity_scores": runs}


@pytest.fixture(scope="module")
def sandbox(spark_session, world, tmp_path_factory) -> Iterator[AEPRenderingOnSpark]:
    """The raw datasets nested on Spark, as the aep backend uploads them, behind its flat views."""
    engine = AEPRenderingOnSpark(spark_session, tmp_path_factory.mktemp("sandbox"), TENANT)
    for spec in (PROFILES, EVENTS, SCORES):
        for index, batch in enumerate(world[spec.name]):
            engine.load(spec.name, batch, spec, replace=index == 0)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def embedded(world, tmp_path_factory) -> LocalPlatform:
    """The same raw datasets on the embedded (DuckDB) platform."""
    config, credentials = platform_config("duckdb", tmp_path_factory.mktemp("embedded"))
    platform = make_platform(config, credentials)
    for spec in (PROFILES, EVENTS, SCORES):
        for index, batch in enumerate(world[spec.name]):
            platform.ingest(spec, [batch], replace=index == 0)
    return platform


def duck_table(platform: LocalPlatform, sql: str) -> pa.Table:
    """A canonical-dialect query's rows on the embedded platform, as Arrow."""
    return pa.Table.from_batches(list(platform.read_batches(sql)))


def logical_type(arrow: pa.DataType) -> str:
    """The logical type of an Arrow type, integer widths kept (a CTAS table keeps its width, and exports
    carry it to the model); a decimal, an interval or anything else is a name that matches no other."""
    if pa.types.is_integer(arrow):
        return f"int{arrow.bit_width}"
    checks = [
        (pa.types.is_float64, "float64"),
        (pa.types.is_boolean, "bool"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_date, "date"),
        (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
    ]
    return next((name for check, name in checks if check(arrow)), f"other:{arrow}")


def differences(expected: pa.Table, got: pa.Table, keys: list[str]) -> list[str]:
    """How ``got`` differs from ``expected`` (rows matched by sorting on ``keys``): column names and
    order, logical types, row count, then values per column (floats within 1e-9 relative)."""
    if expected.column_names != got.column_names:
        return [f"columns {got.column_names} instead of {expected.column_names}"]
    if expected.num_rows != got.num_rows:
        return [f"{got.num_rows} rows instead of {expected.num_rows}"]
    found = []
    order = [(key, "ascending") for key in keys]
    expected, got = expected.sort_by(order), got.sort_by(order)
    for name in expected.column_names:
        want, have = expected.column(name), got.column(name)
        if logical_type(want.type) != logical_type(have.type):
            found.append(f"{name}: type {have.type} instead of {want.type}")
            continue
        if logical_type(want.type) == "float64":
            a = want.to_numpy(zero_copy_only=False).astype(float)
            b = have.to_numpy(zero_copy_only=False).astype(float)
            same = np.isclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True)
        else:
            same = np.array([x == y for x, y in zip(want.to_pylist(), have.to_pylist(), strict=True)])
        if not same.all():
            first = int(np.argmin(same))
            found.append(
                f"{name}: {int((~same).sum())} rows differ, e.g. {have[first].as_py()!r} instead of "
                f"{want[first].as_py()!r} (row {first})"
            )
    return found


def assert_same(embedded: LocalPlatform, sandbox: AEPRenderingOnSpark, table: str, keys: list[str]) -> None:
    """The table ``table`` holds the same rows, types and values on both engines."""
    query = f"SELECT * FROM {identifier(table)}"
    found = differences(duck_table(embedded, query), sandbox.read(query), keys)
    assert not found, f"{table} on Spark (as rendered for a sandbox) differs from DuckDB:\n  " + "\n  ".join(found)


def on_both(embedded: LocalPlatform, sandbox: AEPRenderingOnSpark, build) -> None:
    """Materialise ``build(events, profiles)``'s ``{table: sql}`` by CTAS on both engines, each with its own handles."""
    for engine in (embedded, sandbox):
        handles = (engine.handle("experience_events"), engine.handle("profiles"))
        for table, sql in build(*handles).items():
            engine.create_table_as(table, sql)


FEATURE_TABLES = {
    "training_features": featurization.build_training_features,
    "scoring_features": featurization.build_scoring_features,
}


@pytest.mark.parametrize("feature_set", ["point_in_time", "cmle"])
def test_features_equal_the_embedded_run(embedded, sandbox, feature_set):
    params = FEATURES.model_copy(update={"feature_set": feature_set})
    on_both(
        embedded,
        sandbox,
        lambda events, profiles: {
            f"{name}_{feature_set}": build(events, profiles, params, TIME) for name, build in FEATURE_TABLES.items()
        },
    )
    for name in FEATURE_TABLES:
        assert_same(embedded, sandbox, f"{name}_{feature_set}", ["ecid"])
    # read_batches counts a query's rows first, over the query as a subquery (here one with a WITH clause)
    training = FEATURE_TABLES["training_features"](
        *(sandbox.handle(t) for t in ("experience_events", "profiles")), params, TIME
    )
    counted = sandbox.query(count_sql(training)).column("n").to_pylist()
    assert counted == [sandbox.handle(f"training_features_{feature_set}").row_count]


EDA = {
    "eda_overview": (featurization.explore_overview, ["events"]),
    "data_quality": (lambda events, _: featurization.report_data_quality(events, FEATURES, TIME), ["events"]),
    "eda_funnel": (lambda events, _: featurization.explore_funnel(events), ["stage"]),
    "eda_events_per_day": (lambda events, _: featurization.explore_events_per_day(events), ["day", "event_type"]),
    "eda_precedence": (lambda events, _: featurization.explore_precedence(events), ["first_type", "later_type"]),
    "eda_correlation": (lambda events, _: featurization.explore_correlation(events, FEATURES), ["event_type"]),
    "oracle_history": (lambda events, _: select_oracle_history(events, TIME), ["ecid", "eventType", "timestamp"]),
}


def test_eda_data_quality_and_oracle_history_equal_the_embedded_run(embedded, sandbox):
    on_both(embedded, sandbox, lambda events, profiles: {name: sql(events, profiles) for name, (sql, _) in EDA.items()})
    for name, (_, keys) in EDA.items():
        assert_same(embedded, sandbox, name, keys)


def test_enriched_profiles_histogram_and_audiences_equal_the_embedded_run(embedded, sandbox):
    for engine in (embedded, sandbox):
        view = build_enriched_profiles(engine.handle("profiles"), engine.handle("propensity_scores"))
        engine.create_view("enriched_profiles", view)
        engine.create_table_as(
            "score_histogram", activation.explore_score_histogram(engine.handle("enriched_profiles"), ACTIVATION)
        )
    assert_same(embedded, sandbox, "enriched_profiles", ["ecid"])
    assert_same(embedded, sandbox, "score_histogram", ["bin"])

    histogram = duck_table(embedded, 'SELECT * FROM "score_histogram"').to_pandas()
    definitions = activation.define_audiences(histogram, ACTIVATION)
    assert [d.name for d in definitions][:3] == ["high", "medium", "low"]
    source = ProfileSource.from_config({"table": "enriched_profiles", "tenant": TENANT, "fields": PROFILE_FIELDS})
    wrong = {}
    for definition in definitions:
        expected = embedded_members(embedded, definition, source)
        got = sandbox.audience_members(definition.rule, source.table, source.fields)
        if got != expected:
            wrong[definition.name] = (definition.rule, len(got), len(expected))
        assert 0 < len(expected) < 3_000, f"audience {definition.name} selects {len(expected)} profiles"
    assert not wrong, f"audiences whose members differ on Spark (rule, members, expected): {wrong}"


def embedded_members(platform: LocalPlatform, definition: AudienceDefinition, source: ProfileSource) -> set[str]:
    """The members of an audience as the embedded platform evaluates it (upserted, then a job)."""
    record = platform.upsert_audience(definition, source)
    platform.evaluate_audience(record.id)
    rows = duck_table(platform, f"SELECT ecid FROM audience_membership WHERE audience_id = {literal(record.id)}")
    return set(rows.column("ecid").to_pylist())


def test_the_rendered_sql_is_what_a_sandbox_gets(sandbox):
    """The flat views are nested XDM paths over the datasets' tables, in Spark SQL."""
    views = [statement for statement in sandbox.rendered if statement.startswith("CREATE OR REPLACE VIEW `profiles`")]
    assert views and f"_{TENANT}.userid AS `ecid`" in views[-1] and "FROM `profiles_xdm`" in views[-1]
    sandbox.handle("profiles")
    assert sandbox.rendered[-2:] == ["SELECT * FROM `profiles` LIMIT 0", "SELECT COUNT(*) AS n FROM `profiles`"]


LEDGER_ROWS = {
    AUDIENCES.name: {"id": "seg-1", "name": "high", "source": '{"table": "enriched_profiles"}', "updated": NOW},
    DELIVERIES.name: {
        "id": "d-1",
        "job_id": "job-1",
        "audience_name": "high",
        "destination": "cloud_storage",
        "status": "delivered",
        "members": 300,
        "files": 1,
        "requests": None,
        "bytes": 12_345,
        "started": NOW,
        "completed": None,
        "location": "file:///dlz/high",
        "error": None,
    },
}


@pytest.mark.parametrize("spec", [AUDIENCES, DELIVERIES], ids=lambda spec: spec.name)
def test_the_backend_ledgers_read_back_through_their_flat_views(sandbox, spec):
    """The backend's own datasets (audiences, deliveries) come back through their flat views exactly, and
    their handles (the backend's probe of a table's columns) work on Spark SQL."""
    row = {column.name: LEDGER_ROWS[spec.name].get(column.name) for column in spec.columns}
    flat = pa.Table.from_pylist([row], schema=spec.arrow_schema)
    sandbox.load(spec.name, flat, spec)
    assert sandbox.handle(spec.name) == TableHandle(spec.name, tuple(spec.column_names), 1)
    assert sandbox.query(f"SELECT * FROM {identifier(spec.name)}").equals(flat)


def test_interactive_row_limit_and_replacing_batches(spark_session, tmp_path, world):
    """As on the backend, an interactive result at the row limit is an error (``read`` has none); a
    replacing batch leaves only its rows, an appending one adds to them; instances do not share tables."""
    engine = AEPRenderingOnSpark(spark_session, tmp_path, TENANT, interactive_row_limit=100)
    try:
        profiles = world["profiles"][0]
        engine.load("profiles", profiles.slice(0, 60), PROFILES)
        engine.load("profiles", profiles.slice(60, 40), PROFILES, replace=False)
        with pytest.raises(PlatformError, match="interactive row limit of 100"):
            engine.query('SELECT * FROM "profiles"')
        assert engine.read('SELECT * FROM "profiles" ORDER BY ecid').equals(profiles.slice(0, 100).sort_by("ecid"))
        engine.load("profiles", profiles.slice(100, 5), PROFILES)
        assert engine.handle("profiles").row_count == 5
        gold = engine.query('SELECT count(*) AS n FROM "profiles" WHERE loyalty_tier = ?', ["gold"])
        assert gold.column("n").to_pylist() == [profiles.slice(100, 5).column("loyalty_tier").to_pylist().count("gold")]
        other = pa.table({"ecid": ["a", "b"], "points": [1, None], "seen": pa.array([NOW, None], pa.timestamp("us"))})
        engine.load("other_table", other)  # no spec: the table's own columns, under _{tenant}
        assert f"_{TENANT}.points AS `points`" in engine.rendered[-1]
        assert engine.read('SELECT * FROM "other_table" ORDER BY ecid').equals(other)
        assert not engine.spark.catalog.tableExists("propensity_scores_xdm")
    finally:
        engine.close()
