"""Shared helpers of the benchmarks: timing medians, peak memory, the project's parameters."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
SHARED_BENCH = PROJECT.parent / "shared" / "bench"


def base_parameters(pipeline: str, **overrides: Any) -> dict[str, Any]:
    """conf/base/parameters_<pipeline>.yml with the globals it uses resolved, and ``overrides``."""
    globals_ = yaml.safe_load((PROJECT / "conf/base/globals.yml").read_text())
    raw = yaml.safe_load((PROJECT / f"conf/base/parameters_{pipeline}.yml").read_text())[pipeline]
    text = json.dumps(raw)
    text = text.replace('"${globals:window.start}"', json.dumps(globals_["window"]["start"]))
    text = text.replace('"${globals:window.weeks}"', str(globals_["window"]["weeks"]))
    return {**json.loads(text), **overrides}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB."""
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
