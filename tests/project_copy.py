"""A small, runnable copy of the project, for tests that run the ``kedro`` command line as a user would.

The copy holds pyproject.toml, .telemetry, conf/ (with an empty conf/local) and an empty src/: the
package itself is installed editable, and ``kedro`` only needs the source folder to exist. The sizes of
conf/test's parameter files are merged into the copy's conf/base, so that every environment
(``kedro run``, ``--env cmle``, ``--env postgres``...) runs verbatim on small data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]


def merged(base: Any, override: Any) -> Any:
    """``override`` merged into ``base``, recursively for mappings (as Kedro's soft merge of parameters)."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: merged(base.get(key), value) for key, value in override.items()}}
    return override


def shrink_base_parameters(conf: Path) -> None:
    """Merge each of conf/test's parameter files into the conf/base file of the same name."""
    for small in sorted((conf / "test").glob("parameters*.yml")):
        target = conf / "base" / small.name
        base = yaml.safe_load(target.read_text()) if target.exists() else {}
        target.write_text(yaml.safe_dump(merged(base, yaml.safe_load(small.read_text())), sort_keys=False))


def project_skeleton(target: Path, folders: tuple[str, ...] = ()) -> Path:
    """Make ``target`` a project kedro recognises: pyproject.toml, .telemetry, an empty src/ (the package
    is installed editable), plus copies of the project's ``folders`` (e.g. notebooks)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        if (PROJECT / name).exists():
            shutil.copy2(PROJECT / name, target / name)
    (target / "src").mkdir(exist_ok=True)
    for folder in folders:
        shutil.copytree(PROJECT / folder, target / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return target


def copy_project(target: Path) -> Path:
    """Write a small copy of the project into ``target`` (created) and return it."""
    project_skeleton(target)
    shutil.copytree(PROJECT / "conf", target / "conf", ignore=shutil.ignore_patterns("local"))
    (target / "conf" / "local").mkdir()
    (target / "data").mkdir()
    shrink_base_parameters(target / "conf")
    return target


def command_environment() -> dict[str, str]:
    """This interpreter's environment for shell commands: its ``kedro`` and ``python`` first on PATH, no
    telemetry, no inherited Kedro environment or MLflow store, and logs wide enough to keep one line each."""
    environment = {key: value for key, value in os.environ.items() if key not in {"KEDRO_ENV", "MLFLOW_TRACKING_URI"}}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    environment.update({"KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "COLUMNS": "1000", "NO_COLOR": "1"})
    return environment


def run_shell(command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``command`` verbatim with bash in ``cwd``; stdout and stderr are captured as text."""
    return subprocess.run(
        command,
        shell=True,
        executable="/bin/bash",
        cwd=cwd,
        env=command_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output_tail(result: subprocess.CompletedProcess[str], characters: int = 4000) -> str:
    """The end of a command's output, for assertion messages."""
    stdout, stderr = result.stdout[-characters:], result.stderr[-characters:]
    return f"exit {result.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
