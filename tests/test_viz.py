"""``kedro viz build`` works offline on the project and shows every registered pipeline.

The build runs in a temporary copy of the project (the ``kedro_session`` fixture's copy of conf/, with
the test environment's data root in the temporary folder, plus pyproject.toml and an empty src/) with
``KEDRO_ENV=test``: ``kedro viz build`` has no ``--env`` or ``--conf-source`` option and writes
``build/`` in the working directory, and its dataset previews read the platform, so nothing may run
in the repository itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.project_copy import project_skeleton

PIPELINES = {"data_generation", "featurization", "training", "evaluation", "scoring", "activation"}


def test_viz_build_lists_every_pipeline(tmp_path, kedro_session):
    pytest.importorskip(
        "kedro_viz", reason="kedro-viz is not installed (it is in the test extra: pip install -e '.[test]')"
    )
    project_skeleton(tmp_path)
    environment = {**os.environ, "KEDRO_ENV": "test", "KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build", "--include-previews"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    build = tmp_path / "build"
    main = json.loads((build / "api" / "main").read_text())
    assert {pipeline["id"] for pipeline in main["pipelines"]} == PIPELINES | {"__default__"}
    assert main["selected_pipeline"] == "__default__"
    for name in PIPELINES:
        pipeline = json.loads((build / "api" / "pipelines" / name).read_text())
        assert pipeline["selected_pipeline"] == name
        assert any(node["type"] == "task" for node in pipeline["nodes"]), f"pipeline {name} has no node in the build"
    names = {node["name"] for node in main["nodes"]}
    assert {"experience_events", "propensity_model", "audience_membership", "activation_report"} <= names
    assert (build / "index.html").exists()
