"""The full default `kedro run` (every pipeline, 100,000 people, embedded platform) on a fresh clone.

    python -m benchmarks.bench_full_run [--repeats 3]

Each run clones the repository's HEAD into a temporary folder (so data/ starts empty) and runs
`kedro run` there with this interpreter's environment. Target: median <= 60 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import PROJECT, timed_kedro_run


def main() -> None:
    """Clone, run, repeat; print each run and the median."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = []
    for index in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            clone = Path(folder) / "clone"
            subprocess.run(["git", "clone", "-q", str(PROJECT), str(clone)], check=True)
            seconds, rss = timed_kedro_run(clone)
            reports = sorted((clone / "data/08_reporting/destinations/cloud_storage").rglob("*.csv"))
            if not reports or not (clone / "data/08_reporting/activation_report.csv").exists():
                raise RuntimeError("the run left no audience files or activation report")
        results.append(seconds)
        print(f"run {index + 1}: {seconds:.1f} s, peak RSS {rss:,.0f} MiB, {len(reports)} audience files")
    print(f"full default kedro run: median {statistics.median(results):.1f} s over {len(results)} runs")


if __name__ == "__main__":
    main()
