"""Featurization and scoring + ingestion on Spark local mode against the embedded DuckDB, in one run.

    python -m benchmarks.bench_spark                     # 1,000,000 people (about 11 min on 2 idle vCPUs)
    python -m benchmarks.bench_spark --people 100000     # a quick check
    python -m benchmarks.bench_spark --cores 2 1         # the Spark core counts run (local[n])

Three fresh data roots in one temporary folder, run one after the other on the same machine: DuckDB
(conf/base: 2 threads), Spark ``local[2]`` and Spark ``local[1]`` (``--env spark``); DuckDB is
compared with the Spark run of the most cores, and that run with the one of the fewest (speed-up).
Each root is a small project skeleton (pyproject.toml,
an empty src/, a copy of conf/ whose ``data_root`` is the root's ``data`` folder and whose Spark
``master`` is ``local[n]``), run with ``kedro run --conf-source``, so nothing is written under the
repository (its data/, info.log, spark-warehouse/).

Per root, untimed setup first: data_generation (its seconds are printed); then featurization and the
scoring pipeline (export of scoring_features, scoring, ingestion of propensity_scores, enriched
profiles) are each timed once in a fresh ``kedro run`` process: wall seconds (process start and
imports included) and peak memory summed over the process tree (the kedro process, Spark's JVM and
its Python workers: VmRSS of every descendant every 0.2 s, benchmarks.common.TreeMemorySampler).
The model is trained once, on the DuckDB root (setup, printed), and copied into each Spark root, so
every backend scores with the same model; ``--train-each`` trains on every root instead. Scoring
appends a batch to propensity_scores, so each pipeline runs once per root (no median over repeats).
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import PROJECT, TreeMemorySampler, kedro_run_tree

TIMED = ("featurization", "scoring")


@dataclass
class Root:
    """One backend configuration on its own fresh data root: ``cores`` is None for DuckDB."""

    folder: Path
    cores: int | None = None
    setup: dict[str, float] = field(default_factory=dict)  # pipeline: wall seconds
    timed: dict[str, tuple[float, float]] = field(default_factory=dict)  # pipeline: (seconds, peak MiB)
    samplers: dict[str, TreeMemorySampler] = field(default_factory=dict)  # pipeline: what watched its tree

    @property
    def name(self) -> str:
        """``duckdb`` or ``spark local[n]``."""
        return f"spark local[{self.cores}]" if self.cores else "duckdb"

    @property
    def env_args(self) -> list[str]:
        """The ``kedro run`` arguments choosing this root's environment and configuration."""
        return ["--conf-source", str(self.folder / "conf"), *(["--env", "spark"] if self.cores else [])]

    @property
    def data(self) -> Path:
        """The root's data folder (``data_root`` of its configuration)."""
        return self.folder / "data"


def make_root(folder: Path, cores: int | None) -> Root:
    """A project skeleton in ``folder/duckdb`` or ``folder/spark<cores>``: pyproject.toml, an empty src/
    (the package is installed editable), conf/ copied with both ``data_root`` settings pointing at its own
    ``data`` folder and the Spark ``master`` set to ``local[cores]``."""
    target = folder / (f"spark{cores}" if cores else "duckdb")
    (target / "src").mkdir(parents=True)
    for extra in ("pyproject.toml", ".telemetry"):
        if (PROJECT / extra).exists():
            shutil.copy2(PROJECT / extra, target / extra)
    conf = target / "conf"
    shutil.copytree(PROJECT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    data = target / "data"
    base, spark = conf / "base" / "globals.yml", conf / "spark" / "globals.yml"
    base.write_text(re.sub(r"(?m)^data_root: .*$", f"data_root: {data}", base.read_text(), count=1))
    text = re.sub(r"(?m)^data_root: .*$", f"data_root: {data}", spark.read_text(), count=1)
    spark.write_text(re.sub(r"(?m)^(\s+master: ).*$", rf"\g<1>local[{cores or 2}]", text, count=1))
    return Root(target, cores)


def run(root: Root, pipeline: str, people: int) -> tuple[float, TreeMemorySampler]:
    """Seconds of ``kedro run --pipelines pipeline`` on ``root`` and the sampler that watched its tree."""
    args = [*root.env_args, "--pipelines", pipeline, "--params", f"data_generation.people={people}"]
    return kedro_run_tree(root.folder, args, log=root.folder / f"{pipeline}.log")


def copy_model(source: Root, target: Root) -> None:
    """Copy the versioned propensity model of ``source`` into ``target``'s data root."""
    models = target.data / "06_models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source.data / "06_models" / "propensity_model.pkl", models / "propensity_model.pkl")


def bench(root: Root, people: int, model_from: Root | None) -> None:
    """Set up ``root`` (data generation, and training unless ``model_from`` gives the model), time each
    pipeline of TIMED, print as it goes. A failed pipeline is printed (its log kept under ``--keep``) and
    the root's later pipelines are skipped."""
    try:
        root.setup["data_generation"], *_ = run(root, "data_generation", people)
        print(f"[{root.name}] setup: data_generation {root.setup['data_generation']:.1f} s", flush=True)
        for pipeline in TIMED:
            if pipeline == "scoring" and model_from is None:
                root.setup["training"], *_ = run(root, "training", people)
                print(f"[{root.name}] setup: training {root.setup['training']:.1f} s", flush=True)
            elif pipeline == "scoring" and model_from is not None:
                copy_model(model_from, root)
            seconds, sampler = run(root, pipeline, people)
            root.timed[pipeline], root.samplers[pipeline] = (seconds, sampler.peak_mib), sampler
            by_name = sorted(sampler.peak_by_name.items(), key=lambda item: -item[1])
            parts = ", ".join(f"{name} {kib / 1024:,.0f}" for name, kib in by_name)
            print(
                f"[{root.name}] {pipeline}: {seconds:.1f} s, peak tree memory {sampler.peak_mib:,.0f} MiB ({parts}), "
                f"tree CPU {sampler.cpu_seconds:.0f} s, mean load {sampler.mean_load:.1f}",
                flush=True,
            )
    except (RuntimeError, OSError) as error:
        print(f"[{root.name}] failed: {str(error)[-1500:]}", flush=True)


def cell(root: Root, pipeline: str) -> str:
    """``seconds s  peak MiB`` of one timed pipeline, or ``-`` if it did not run."""
    if pipeline not in root.timed:
        return f"{'-':>26}"
    seconds, peak = root.timed[pipeline]
    return f"{seconds:>11.1f} s {peak:>8,.0f} MiB"


def report(roots: list[Root], people: int) -> None:
    """Print the table of the timed pipelines, the Spark/DuckDB ratios and the Spark speed-up."""
    duckdb, spark = roots[0], sorted(roots[1:], key=lambda root: root.cores or 0)
    print(f"\n{people:,} people: wall seconds of a fresh kedro process, peak memory summed over its process tree")
    print(f"{'pipeline':<15}" + "".join(f"{root.name:>26}" for root in roots))
    for pipeline in TIMED:
        print(f"{pipeline:<15}" + "".join(cell(root, pipeline) for root in roots))
    for root in roots:
        print(f"setup {root.name}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in root.setup.items()))
    for pipeline in TIMED:
        if spark and pipeline in spark[-1].timed and pipeline in duckdb.timed:
            ratio = spark[-1].timed[pipeline][0] / duckdb.timed[pipeline][0]
            print(f"{pipeline}: {spark[-1].name} / {duckdb.name} time ratio {ratio:.2f}")
        for root in spark[1:]:
            if pipeline in root.timed and pipeline in spark[0].timed:
                speedup = spark[0].timed[pipeline][0] / root.timed[pipeline][0]
                print(f"{pipeline}: speed-up of {root.name} over {spark[0].name} {speedup:.2f}x")


def main() -> None:
    """Make the roots, run them one after the other, print the figures, delete the temporary folder (unless
    ``--keep``); the exit status is 1 if a pipeline failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 1], help="Spark local[n] runs, in this order")
    parser.add_argument("--train-each", action="store_true", help="train on every root (default: DuckDB's only)")
    parser.add_argument("--keep", type=Path, help="run in this folder (created) and keep it, logs included")
    args = parser.parse_args()
    cores = list(dict.fromkeys(args.cores))
    with tempfile.TemporaryDirectory(prefix="bench_spark-") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        roots = [make_root(folder, None), *(make_root(folder, n) for n in cores)]
        for root in roots:
            bench(root, args.people, None if args.train_each or root is roots[0] else roots[0])
        report(roots, args.people)
    if any(len(root.timed) < len(TIMED) for root in roots):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
