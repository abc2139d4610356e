"""The full default `kedro run` (every pipeline, 100,000 people, embedded platform) on a fresh clone.

    python -m benchmarks.bench_full_run [--repeats 3]

Each run clones the repository's HEAD into a temporary folder (so data/ starts empty) and runs
`kedro run` there with this interpreter's environment. Target: median <= 60 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import PROJECT


def run_once(clone: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one `kedro run` in ``clone``."""
    kedro = Path(sys.executable).with_name("kedro")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(kedro), "run"], cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"kedro run failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


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
            seconds, rss = run_once(clone)
            reports = sorted((clone / "data/08_reporting/destinations/cloud_storage").rglob("*.csv"))
            if not reports or not (clone / "data/08_reporting/activation_report.csv").exists():
                raise RuntimeError("the run left no audience files or activation report")
        results.append(seconds)
        print(f"run {index + 1}: {seconds:.1f} s, peak RSS {rss:,.0f} MiB, {len(reports)} audience files")
    print(f"full default kedro run: median {statistics.median(results):.1f} s over {len(results)} runs")


if __name__ == "__main__":
    main()
