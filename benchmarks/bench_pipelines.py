"""Pipeline runs through Kedro on prepared data: training + evaluation at 100k people, scoring at 1M.

    python -m benchmarks.bench_pipelines training      # training + evaluation, 100,000 people
    python -m benchmarks.bench_pipelines scoring       # scoring + ingestion, 1,000,000 people

Each prepares its data once (the earlier pipelines, in a copy of conf/ pointing at a temporary data
root), then times the pipelines through a KedroSession in a fresh process, 3 times; the time is
the session's run (imports excluded), the memory the process's peak RSS. Targets on the 2-core
machine: training + evaluation <= 20 s; scoring + ingestion <= 10 s with peak RSS <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from benchmarks.common import PROJECT, conf_copy, peak_rss_mb, timed, timed_kedro_run

CASES = {  # name: (people, pipelines prepared first, pipelines timed)
    "training": (100_000, "data_generation,featurization", ["training", "evaluation"]),
    "scoring": (1_000_000, "data_generation,featurization,training", ["scoring"]),
}


def run_session(conf: str, people: int, pipelines: list[str]) -> dict:
    """Time one session run of ``pipelines`` (in this process)."""
    bootstrap_project(PROJECT)
    params = {"data_generation": {"people": people}}
    with KedroSession.create(project_path=PROJECT, conf_source=conf, runtime_params=params) as session:
        seconds, _ = timed(lambda: session.run(pipeline_names=pipelines))
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    """Prepare, then time the case's pipelines in fresh processes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=1, metavar="CONF", help=argparse.SUPPRESS)
    args = parser.parse_args()
    people, prepare, pipelines = CASES[args.case]
    if args.one:
        print(json.dumps(run_session(args.one[0], people, pipelines)))
        return
    with tempfile.TemporaryDirectory() as folder:
        conf = conf_copy(Path(folder))
        seconds, _ = timed_kedro_run(
            PROJECT, "--conf-source", str(conf), "--pipelines", prepare, "--params", f"data_generation.people={people}"
        )
        print(f"prepared {people:,} people ({prepare}) in {seconds:.1f} s")
        runs = []
        for _ in range(args.repeats):
            output = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_pipelines", args.case, "--one", str(conf)],
                cwd=PROJECT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs.append(json.loads(output.strip().splitlines()[-1]))
            print(f"  {'+'.join(pipelines)}: {runs[-1]['seconds']:.2f} s, peak RSS {runs[-1]['peak_rss_mb']:,.0f} MiB")
    print(
        f"{'+'.join(pipelines)} at {people:,} people: median {statistics.median(r['seconds'] for r in runs):.2f} s, "
        f"peak RSS median {statistics.median(r['peak_rss_mb'] for r in runs):,.0f} MiB over {len(runs)} runs"
    )


if __name__ == "__main__":
    main()
