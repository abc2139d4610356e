"""The cmle mode against the original's saved run: 5 seeds of 100,000 people, averaged.

    python -m benchmarks.check_cmle_fidelity [--seeds 5] [--people 100000]

Bounds (issue "Foundation"): total events within 1.5% of 1,064,218; converting share within 0.5
points of 14.83%; each event type with 10,000 or more occurrences within 3% of its count in
the original's saved run, rarer types within 8%. Prints every figure and exits non-zero on a miss.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from aep_propensity.simulation.original import ORIGINAL_CONVERTING_SHARE, ORIGINAL_EVENT_COUNTS, ORIGINAL_EVENTS
from aep_propensity.simulation.params import SimulationParams
from aep_propensity.simulation.simulator import TYPE_NAMES, simulate_chunk
from benchmarks.common import base_parameters


def main() -> None:
    """Simulate, compare, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--people", type=int, default=100_000)
    args = parser.parse_args()
    params = SimulationParams(**base_parameters("simulation", mode="cmle"))
    totals = np.zeros(len(TYPE_NAMES))
    for seed in range(args.seeds):
        events = simulate_chunk(np.ones(args.people), params, np.random.default_rng(seed))
        totals += np.bincount(events.code, minlength=len(TYPE_NAMES))
    counts = dict(zip(TYPE_NAMES, totals * 100_000 / (args.people * args.seeds), strict=True))
    misses = []
    total = sum(counts.values())
    share = counts["web.formFilledOut"] / 100_000
    total_error, share_error = total / ORIGINAL_EVENTS - 1, share - ORIGINAL_CONVERTING_SHARE
    print(f"total events per 100k people: {total:,.0f} vs {ORIGINAL_EVENTS:,} ({100 * total_error:+.2f}%, bound 1.5%)")
    print(
        f"converting share: {100 * share:.2f}% vs {100 * ORIGINAL_CONVERTING_SHARE:.2f}% "
        f"({100 * share_error:+.2f} points, bound 0.5)"
    )
    if abs(total_error) > 0.015:
        misses.append("total")
    if abs(share_error) > 0.005:
        misses.append("conversion")
    for name, original in ORIGINAL_EVENT_COUNTS.items():
        bound = 0.03 if original >= 10_000 else 0.08
        error = counts[name] / original - 1
        print(f"  {name:34s} {counts[name]:>10,.0f} vs {original:>8,} ({100 * error:+.2f}%, bound {100 * bound:.0f}%)")
        if abs(error) > bound:
            misses.append(name)
    print("all within bounds" if not misses else f"OUT OF BOUNDS: {misses}")
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
