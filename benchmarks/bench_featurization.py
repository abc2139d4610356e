"""Featurization at 1M people (about 10.6M events) on DuckDB, against the floor of one GROUP BY.

    python -m benchmarks.bench_featurization [--people 1000000] [--repeats 3] [--skip-postgres]

Generates the people once into a fresh DuckDB file, then times (medians of 3, in this run):
- the floor: SELECT ecid, eventType, count(*), max(timestamp) FROM experience_events GROUP BY 1, 2;
- the point-in-time training features and the scoring features (CTAS, as the pipeline runs them).
Target: featurization <= 4x the floor. Printed beside them, for reference: the same training
features on PostgreSQL (once) and a straightforward pandas groupby of the same features (once).
Also the export of the whole events table (about 10.6M rows) as Parquet in the Data Landing Zone
layout, in a fresh process, with that process's peak RSS (bounded memory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import uuid

import pandas as pd
import psycopg2
import pyarrow as pa

from aep_propensity.parameters import TimeDesign
from aep_propensity.pipelines.data_generation import nodes as generation
from aep_propensity.pipelines.data_generation.params import DataGenerationParams
from aep_propensity.pipelines.featurization import nodes
from aep_propensity.pipelines.featurization.params import FeaturizationParams
from aep_propensity.platform import DatasetSpec, make_platform
from aep_propensity.simulation.params import SimulationParams
from benchmarks.common import PROJECT, base_parameters, catalog_spec, peak_rss_mb, timed

FLOOR = 'SELECT ecid, "eventType", count(*) AS n, max("timestamp") AS last_seen FROM experience_events GROUP BY 1, 2'
PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def load(platform, people: int) -> None:
    """Generate ``people`` with the default parameters and ingest them."""
    simulation = SimulationParams(**base_parameters("simulation"))
    params = DataGenerationParams(**base_parameters("data_generation", people=people))
    latents = generation.draw_person_latents(simulation, params)
    platform.ingest(
        catalog_spec("experience_events"),
        generation.simulate_events(latents, simulation, params),
        replace=True,
    )
    platform.ingest(
        catalog_spec("profiles"),
        generation.simulate_profiles(latents, simulation, params),
        replace=True,
    )


def pandas_features(events: pd.DataFrame, params: FeaturizationParams, time: TimeDesign) -> pd.DataFrame:
    """The point-in-time counts, recent counts, recency and activity with a plain pandas groupby."""
    cutoff = pd.Timestamp(time.training_cutoff)
    history = events[(events["timestamp"] >= cutoff - time.lookback) & (events["timestamp"] < cutoff)]
    grouped = history.groupby(["ecid", "eventType"], observed=True)["timestamp"]
    counts = grouped.size().unstack(fill_value=0)
    recency = ((cutoff - grouped.max()).dt.total_seconds() / 86_400).unstack()
    parts = [counts, recency.fillna(time.lookback_days)]
    for days in params.recent_days:
        recent = history[history["timestamp"] >= cutoff - pd.Timedelta(days=days)]
        parts.append(recent.groupby(["ecid", "eventType"], observed=True).size().unstack(fill_value=0))
    activity = (
        history.assign(day=history["timestamp"].dt.floor("D"))
        .groupby("ecid")
        .agg(n_events=("day", "size"), active_days=("day", "nunique"))
    )
    return pd.concat([*parts, activity], axis=1)


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--export", nargs=2, metavar=("DATABASE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:
        print(json.dumps(export_once(*args.export)))
        return
    params = FeaturizationParams(**base_parameters("featurization"))
    time = TimeDesign(**base_parameters("time_design"))
    with tempfile.TemporaryDirectory() as folder:
        duck = make_platform(
            {"backend": "duckdb", "path": f"{folder}/platform.duckdb", "memory_limit": "6GB", "threads": 2}
        )
        seconds, _ = timed(lambda: load(duck, args.people))
        events, profiles = duck.handle("experience_events"), duck.handle("profiles")
        print(f"{args.people:,} people, {events.row_count:,} events generated and ingested in {seconds:.1f} s")
        training = nodes.build_training_features(events, profiles, params, time)
        scoring = nodes.build_scoring_features(events, profiles, params, time)
        floor, train, score = [], [], []
        for _ in range(args.repeats):
            floor.append(timed(lambda: duck.create_table_as("floor", FLOOR))[0])
            train.append(timed(lambda: duck.create_table_as("training_features", training))[0])
            score.append(timed(lambda: duck.create_table_as("scoring_features", scoring))[0])
        f, t, s = statistics.median(floor), statistics.median(train), statistics.median(score)
        print(f"DuckDB floor GROUP BY: median {f:.2f} s")
        print(
            f"DuckDB training features: median {t:.2f} s = {t / f:.2f}x the floor; "
            f"scoring features: median {s:.2f} s = {s / f:.2f}x; peak RSS {peak_rss_mb():,.0f} MiB"
        )
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_featurization",
                "--export",
                f"{folder}/platform.duckdb",
                f"{folder}/dlz",
            ],
            cwd=PROJECT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        exported = json.loads(output.strip().splitlines()[-1])
        print(
            f"export of experience_events: {exported['rows']:,} rows in {exported['files']} files, "
            f"{exported['bytes'] / 2**20:,.0f} MiB, {exported['seconds']:.1f} s, "
            f"peak RSS of the exporting process {exported['peak_rss_mb']:,.0f} MiB"
        )
        frame = pa_to_pandas(duck)
        seconds, _ = timed(lambda: pandas_features(frame, params, time))
        print(f"pandas groupby of the same features (events already in memory): {seconds:.2f} s = {seconds / f:.2f}x")
        if not args.skip_postgres:
            postgres_reference(duck, training)


def export_once(database: str, target: str) -> dict:
    """Export the events table of ``database`` to ``target`` in this process; figures as a dict."""
    platform = make_platform({"backend": "duckdb", "path": database, "memory_limit": "1GB", "threads": 2})
    seconds, record = timed(lambda: platform.export("experience_events", target))
    return {
        "rows": record.rows,
        "files": record.files,
        "bytes": record.bytes,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def pa_to_pandas(duck) -> pd.DataFrame:
    """The events' ecid, type and time as a DataFrame (categoricals for the groupby)."""
    table = pa.Table.from_batches(
        list(duck.read_batches('SELECT ecid, "eventType", "timestamp" FROM experience_events'))
    )
    frame = table.to_pandas()
    return frame.astype({"ecid": "category", "eventType": "category"})


def postgres_reference(duck, training_sql: str) -> None:
    """Copy the tables to a fresh PostgreSQL schema and time the training features there once."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    postgres = make_platform({"backend": "postgres", "schema": schema}, {"dsn": PG_DSN})
    try:
        for table in ("experience_events", "profiles"):
            spec = DatasetSpec.from_config(table, {"columns": dict(_columns(duck, table))})
            seconds, _ = timed(
                lambda spec=spec, table=table: postgres.ingest(
                    spec, duck.read_batches(f'SELECT * FROM "{table}"', 500_000), replace=True
                )
            )
            print(f"PostgreSQL: {table} loaded in {seconds:.1f} s")
        seconds, _ = timed(lambda: postgres.create_table_as("training_features", training_sql))
        print(f"PostgreSQL training features: {seconds:.2f} s (once)")
    finally:
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


def _columns(duck, table: str) -> list[tuple[str, str]]:
    """(column, logical type) of a DuckDB table, from the ledger's registry."""
    registry = duck.datasets().set_index("name")
    return list(registry.loc[table, "columns"].items())


if __name__ == "__main__":
    main()
