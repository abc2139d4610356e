"""``aep-emulator`` without its extra: one line saying how to install it, exit status 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aep_propensity.emulator.cli import EXTRA_MODULES

SCRIPT = Path(sys.executable).parent / "aep-emulator"
INSTALL = "pip install 'aep-propensity[emulator]'"


def require_script() -> None:
    """Skip without the installed console script (an install of the project makes it)."""
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} is not installed (pip install -e '.[test]')")


def without(module: str, tmp_path: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a Python where ``module`` cannot be imported (a ``sitecustomize`` hides it)."""
    (tmp_path / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    paths = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "jsonpatch"])
def test_without_the_extra_the_script_says_how_to_install_it(module: str, tmp_path: Path) -> None:
    """The installed ``aep-emulator`` script with a module of the extra missing: a one-line message, status 1."""
    assert module in EXTRA_MODULES
    require_script()
    done = without(module, tmp_path, [str(SCRIPT), "--port", "1"])
    assert done.returncode == 1, done
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"aep-emulator: the emulator needs its extra: {INSTALL} (missing: {module})"
    ]


def test_without_the_extra_main_says_so_and_help_still_works(tmp_path: Path) -> None:
    """``cli.main`` itself, FastAPI hidden: the options still parse (``--help``), serving stops with the message."""
    call = "from aep_propensity.emulator.cli import main; main(sys.argv[1:])"
    command = [sys.executable, "-c", f"import sys; {call}"]
    helped = without("fastapi", tmp_path, [*command, "--help"])
    assert helped.returncode == 0 and "--query-timeout-seconds" in helped.stdout, helped
    done = without("fastapi", tmp_path, [*command, "--port", "1"])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done
    assert INSTALL in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_another_import_error_is_not_taken_for_the_missing_extra(tmp_path: Path) -> None:
    """A module outside the extra that fails to import is the real error: its traceback, not the hint."""
    require_script()
    done = without("aep_propensity.emulator.app", tmp_path, [str(SCRIPT), "--port", "1"])
    assert done.returncode == 1 and "Traceback" in done.stderr and INSTALL not in done.stderr, done
