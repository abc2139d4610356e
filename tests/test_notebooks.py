"""The notebooks run as they are, on the test environment's outputs, and are committed without outputs.

``%load_ext kedro.ipython`` finds the project from the kernel's working directory and takes the
environment from ``KEDRO_ENV``, but has no environment variable for the configuration source (only
``%reload_kedro --conf-source``). So the pipelines run in the test environment on a temporary data
root (the ``kedro_session`` fixture's copy of conf/), that folder is completed into a temporary copy
of the project (tests/project_copy.py: pyproject.toml, an empty src/, notebooks/), and each notebook
runs in a kernel started there with ``KEDRO_ENV=test``: nothing reads or writes the repository's data/.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.project_copy import PROJECT, project_skeleton

NOTEBOOKS = sorted((PROJECT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_explore_data.ipynb", "02_model_report.ipynb", "03_audiences.ipynb"]
# What a notebook must not do by hand: read files or open connections (everything comes from the catalog).
HAND_MADE_IO = re.compile(
    r"\bopen\(|\bread_(csv|parquet|json|pickle|table|sql)\b|\bduckdb\b|\bpsycopg2\b|\bmake_platform\b|"
    r"\bpyarrow\b|\bfsspec\b|\bpathlib\b|\bPath\(|%reload_kedro|--conf-source"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b]*\x1b\\")


def code_cells(path: Path) -> list[dict]:
    """The code cells of a notebook file, as stored."""
    return [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]


def test_the_notebooks_are_there():
    assert [path.name for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stripped(path):
    cells = code_cells(path)
    assert cells, f"{path.name} has no code cells"
    with_outputs = [index for index, cell in enumerate(cells) if cell["outputs"] or cell["execution_count"] is not None]
    assert not with_outputs, f"{path.name}: code cells {with_outputs} keep outputs or execution counts; strip them"
    nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_loads_only_through_the_catalog(path):
    cells = code_cells(path)
    assert "".join(cells[0]["source"]).startswith("%load_ext kedro.ipython"), "the first code cell loads Kedro"
    for index, cell in enumerate(cells):
        found = HAND_MADE_IO.search("".join(cell["source"]))
        assert found is None, f"{path.name}, code cell {index}: {found.group(0)!r}; load through the catalog instead"


def _plain_text(output: dict) -> str:
    """An output's text/plain, without the terminal colours rich adds."""
    return ANSI.sub("", output.get("data", {}).get("text/plain", ""))


def test_notebooks_run_on_the_test_environment(tmp_path, kedro_session):
    with kedro_session() as session:
        session.run()
    project = project_skeleton(tmp_path, ("notebooks",))
    environment = {**os.environ, "KEDRO_ENV": "test", "KEDRO_DISABLE_TELEMETRY": "1"}
    failures = {}
    for name in EXPECTED:
        notebook = nbformat.read(project / "notebooks" / name, as_version=4)
        client = NotebookClient(
            notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(project)}}
        )
        try:
            client.execute(env=environment)
        except CellExecutionError as error:
            failures[name] = str(error)
            continue
        outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
        environments = [
            _plain_text(output)
            for cell in notebook.cells
            if cell.cell_type == "code" and "context.env" in cell.source
            for output in cell.outputs
            if output.output_type == "execute_result"
        ]
        if environments != ["'test'"]:
            failures[name] = f"ran in Kedro environment {environments}, not 'test'"
        elif not any("image/png" in output.get("data", {}) for output in outputs):
            failures[name] = "drew no figure"
    assert not failures, "\n\n".join(f"{name}: {problem}" for name, problem in failures.items())
