"""Shared helpers of the benchmarks (and the tests): timing medians, peak memory, the project's parameters and
the schemas its catalog declares."""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from aep_propensity.platform import DatasetSpec

PROJECT = Path(__file__).resolve().parents[1]
SHARED_BENCH = PROJECT.parent / "shared" / "bench"


def base_parameters(key: str, **overrides: Any) -> dict[str, Any]:
    """The ``key`` parameters of conf/base/parameters_<key>.yml with the window of the globals, and ``overrides``."""
    globals_ = yaml.safe_load((PROJECT / "conf/base/globals.yml").read_text())
    raw = yaml.safe_load((PROJECT / f"conf/base/parameters_{key}.yml").read_text())[key]
    text = json.dumps(raw).replace('"${globals:window}"', json.dumps(globals_["window"]))
    return {**json.loads(text), **overrides}


def catalog_spec(table: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a platform table declared with a ``schema`` under ``_platform_tables``
    (conf/base)."""
    for path in sorted((PROJECT / "conf" / "base").glob("catalog*.yml")):
        tables = (yaml.safe_load(path.read_text()) or {}).get("_platform_tables") or {}
        if (tables.get(table) or {}).get("schema"):
            return DatasetSpec.from_config(table, tables[table]["schema"])
    raise KeyError(f"no platform table {table!r} with a schema in conf/base")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (VmHWM: getrusage's figure can carry a parent's peak
    across fork and exec on Linux)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``function()`` and its result."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def run_isolated(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --one args`` in a fresh process; its last line is JSON."""
    output = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--one", *args],
        cwd=PROJECT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    """The median of ``key`` over runs."""
    return statistics.median(run[key] for run in runs)


def conf_copy(folder: Path) -> Path:
    """A copy of conf/ whose base data root is ``folder/data`` (absolute), for runs that leave data/ alone."""
    conf = folder / "conf"
    shutil.copytree(PROJECT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    globals_file = conf / "base" / "globals.yml"
    globals_file.write_text(globals_file.read_text().replace("data_root: data", f"data_root: {folder / 'data'}", 1))
    return conf


def timed_kedro_run(cwd: Path, *args: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of ``kedro run *args`` in a fresh process started in ``cwd``."""
    kedro = Path(sys.executable).with_name("kedro")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(kedro), "run", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"kedro run {' '.join(args)} failed: {process.stderr.read().decode()[-3000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024
