"""The house's import rules: the import-linter contracts of pyproject.toml hold, and each one can fail.

Each violation is written into a copy of the package, which ``lint-imports`` then analyses in place
of the installed one (``PYTHONPATH`` comes before the editable install on ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project_copy import PROJECT, copy_project, run_shell

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

VIOLATIONS = {
    "cycle": (
        "model.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from aep_propensity.pipelines.training import nodes\n",
        "No import cycles anywhere in the package",
    ),
    "backend imports a backend": (
        "platform/local/platform.py",
        "from aep_propensity.platform.aep import xdm\n",
        "Backends are siblings: none imports another BROKEN",
    ),
    "emulator imports the aep backend": (
        "emulator/config.py",
        "import aep_propensity.platform.aep.client\n",
        "never on the aep backend BROKEN",
    ),
    "core imports a backend": (
        "platform/core/sql.py",
        "import aep_propensity.platform.local.engines\n",
        "over sibling backends over the core BROKEN",
    ),
}


def lint_imports(src: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts, on the package under ``src`` (default: the installed one)."""
    environment = dict(os.environ)
    if src is not None:
        environment["PYTHONPATH"] = str(src)
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(PROJECT / "pyproject.toml"), "--no-cache"],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_hold():
    result = lint_imports()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
def test_each_contract_fails_on_its_violation(violation, tmp_path):
    module, line, broken = VIOLATIONS[violation]
    package = tmp_path / "src" / "aep_propensity"
    shutil.copytree(PROJECT / "src" / "aep_propensity", package, ignore=shutil.ignore_patterns("__pycache__"))
    target = package / module
    target.write_text(target.read_text() + "\n" + line)
    result = lint_imports(tmp_path / "src")
    assert result.returncode != 0 and broken in result.stdout, result.stdout[-4000:]


_IMPORT_PROBE = """
import importlib.metadata
import sys
from pathlib import Path

for name in ("fastapi", "uvicorn", "starlette"):
    sys.modules[name] = None  # as on an install without the emulator's extra: importing it fails
# kedro-mlflow (the optional mlflow extra) would load as a plugin and import MLflow, whose gateway needs
# FastAPI: a default install has neither, so its entry points are hidden from Kedro's plugin loader.
_distributions = importlib.metadata.distributions
importlib.metadata.distributions = lambda **kw: [
    d for d in _distributions(**kw) if d.metadata["Name"] not in ("kedro-mlflow", "kedro_mlflow")
]

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

bootstrap_project(Path.cwd())
with KedroSession.create(project_path=Path.cwd()) as session:
    session.run()
backends = sorted(m for m in sys.modules if m.startswith(("aep_propensity.platform.aep", "aep_propensity.emulator")))
print("BACKENDS", backends)
"""


def test_a_default_run_imports_neither_the_aep_backend_nor_the_web_framework(tmp_path):
    project = copy_project(tmp_path / "project")
    (project / "import_probe.py").write_text(_IMPORT_PROBE)
    result = run_shell("python import_probe.py", project, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "BACKENDS []" in result.stdout, result.stdout[-2000:]
