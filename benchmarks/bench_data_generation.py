"""Generation + ingestion throughput and memory, beside the original's per-person loop.

    python -m benchmarks.bench_data_generation            # 100k and 1M people (medians of 3), the loop, 10M once
    python -m benchmarks.bench_data_generation --skip-10m

Each measurement runs in a fresh process (so its peak RSS is its own) on a fresh DuckDB file,
with the project's default parameters: draw latents, simulate and ingest events and profiles.
Targets on the 2-core machine: 100k people <= 3 s; at 1M people >= 10x the loop's events/s;
10M people with peak RSS <= 3 GB.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile

from aep_propensity.pipelines.data_generation import nodes
from aep_propensity.pipelines.data_generation.params import DataGenerationParams
from aep_propensity.platform import make_platform
from aep_propensity.simulation.params import SimulationParams
from benchmarks.common import (
    SHARED_BENCH,
    base_parameters,
    catalog_spec,
    median_of,
    peak_rss_mb,
    run_isolated,
    timed,
)


def generate_once(people: int, memory_limit: str) -> dict:
    """One generation + ingestion run into a fresh DuckDB file; figures as a dict."""
    simulation = SimulationParams(**base_parameters("simulation"))
    params = DataGenerationParams(**base_parameters("data_generation", people=people))
    with tempfile.TemporaryDirectory() as folder:
        platform = make_platform(
            {"backend": "duckdb", "path": f"{folder}/platform.duckdb", "memory_limit": memory_limit, "threads": 2}
        )

        def run() -> tuple[int, int]:
            latents = nodes.draw_person_latents(simulation, params)
            events = platform.ingest(
                catalog_spec("experience_events"),
                nodes.simulate_events(latents, simulation, params),
                replace=True,
            )
            profiles = platform.ingest(
                catalog_spec("profiles"),
                nodes.simulate_profiles(latents, simulation, params),
                replace=True,
            )
            return events.rows, profiles.rows

        seconds, (events, profiles) = timed(run)
    return {
        "people": people,
        "seconds": seconds,
        "events": events,
        "profiles": profiles,
        "events_per_s": events / seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def loop_reference(people: int) -> dict:
    """The original notebook's per-person generation loop (the reference baseline), measured now on this machine."""
    output = subprocess.run(
        [sys.executable, str(SHARED_BENCH / "cmle_loop_reference.py"), str(people)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures = dict(re.findall(r"(\w+)=([\d.]+)", output))
    return {
        "people": people,
        "events": int(figures["events"]),
        "seconds": float(figures["seconds"]),
        "events_per_s": float(figures["events_per_s"]),
    }


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=2, metavar=("PEOPLE", "MEMORY_LIMIT"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-10m", action="store_true", help="skip the 10M-people run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(generate_once(int(args.one[0]), args.one[1])))
        return
    loop = loop_reference(100_000)
    print(
        f"reference loop (the original's), 100k people: {loop['events']:,} events in {loop['seconds']:.2f} s "
        f"= {loop['events_per_s']:,.0f} events/s (events only: no ids, payloads or ingestion)"
    )
    for people in (100_000, 1_000_000):
        runs = [run_isolated("bench_data_generation", str(people), "2GB") for _ in range(args.repeats)]
        seconds, rate = median_of(runs, "seconds"), median_of(runs, "events_per_s")
        print(
            f"ours, {people:>10,} people: median {seconds:6.2f} s over {len(runs)} runs, "
            f"{runs[0]['events']:,} events, {rate:,.0f} events/s = {rate / loop['events_per_s']:.1f}x the loop, "
            f"peak RSS {median_of(runs, 'peak_rss_mb'):,.0f} MiB"
        )
    if not args.skip_10m:
        run = run_isolated("bench_data_generation", "10000000", "1GB")
        print(
            f"ours, 10,000,000 people: {run['seconds']:.1f} s, {run['events']:,} events, "
            f"{run['events_per_s']:,.0f} events/s, peak RSS {run['peak_rss_mb']:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
