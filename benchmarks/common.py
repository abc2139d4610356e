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
import threading
import time
from collections.abc import Callable, Sequence
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


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from each /proc/<pid>/stat's parent id (field 4, after the ``)`` of the name)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended while being read
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (/proc/<pid>/stat utime and stime); 0 if it
    ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant of it (children, grandchildren...)."""
    children, tree, pending = _children_by_parent(), [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS, KiB) of process ``pid`` now; 0 if it ended or has none (a zombie)."""
    return named_rss_kib(pid)[1]


def named_rss_kib(pid: int) -> tuple[str, int]:
    """The command name (``Name:``, e.g. ``java``, ``python3``) and VmRSS (KiB) of process ``pid`` now;
    ``("", 0)`` if it ended, 0 KiB if it has no memory (a zombie)."""
    name, rss = "", 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Name:"):
                name = line.split(maxsplit=1)[1] if len(line.split()) > 1 else ""
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    except OSError:
        return "", 0
    return name, rss


class TreeMemorySampler:
    """Peak resident memory summed over a process tree: a thread reads VmRSS of ``root`` and of every
    descendant (e.g. a kedro process, its JVM and Spark's Python workers) every ``interval`` seconds and
    keeps the largest sum. Shared pages (a forked worker's copy-on-write pages) count in each process, so
    the sum is an upper bound of the tree's physical memory; a peak shorter than ``interval`` can be missed.

    Use as ``with TreeMemorySampler(pid) as sampler: ...; sampler.peak_mib``.
    """

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval = root, interval
        self.peak_kib, self.peak_processes, self.samples = 0, 0, 0
        self.peak_by_name: dict[str, int] = {}  # command name: summed VmRSS (KiB) at the peak
        self._cpu: dict[int, float] = {}  # pid: CPU seconds at its last sample
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tree-memory-{root}", daemon=True)

    def sample(self) -> int:
        """Take one sample now; return the tree's summed VmRSS (KiB)."""
        tree = process_tree(self.root)
        by_name: dict[str, int] = {}
        for pid in tree:
            name, rss = named_rss_kib(pid)
            if rss:
                by_name[name] = by_name.get(name, 0) + rss
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), cpu_seconds(pid))
        self.loads.append(os.getloadavg()[0])
        total = sum(by_name.values())
        self.samples += 1
        if total > self.peak_kib:
            self.peak_kib, self.peak_processes, self.peak_by_name = total, len(tree), by_name
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds used by the processes of the tree that were sampled (see the class)."""
        return sum(self._cpu.values())

    @property
    def mean_load(self) -> float:
        """The mean of the 1-minute load averages sampled (0 before any sample)."""
        return sum(self.loads) / len(self.loads) if self.loads else 0.0

    @property
    def peak_mib(self) -> float:
        """The largest summed VmRSS seen, in MiB."""
        return self.peak_kib / 1024

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def kedro_run_tree(cwd: Path, args: Sequence[str], log: Path | None = None) -> tuple[float, TreeMemorySampler]:
    """Wall seconds of ``kedro run *args`` in a fresh process started in ``cwd``, and the
    :class:`TreeMemorySampler` that watched its process tree (peak memory, CPU seconds, load); its output
    goes to ``log`` (or nowhere)."""
    kedro = Path(sys.executable).with_name("kedro")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200"}
    env.pop("KEDRO_ENV", None)
    with open(log or os.devnull, "w") as output:
        started = time.perf_counter()
        process = subprocess.Popen([str(kedro), "run", *args], cwd=cwd, env=env, stdout=output, stderr=output)
        with TreeMemorySampler(process.pid) as sampler:
            status = process.wait()
        seconds = time.perf_counter() - started
    if status != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise RuntimeError(f"kedro run {' '.join(args)} failed (exit {status}): {tail}")
    return seconds, sampler
