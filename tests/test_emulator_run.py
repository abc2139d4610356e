"""End to end through the aep backend: every pipeline with ``--env emulator`` against a real emulator on a
free loopback port, with transient 429s and 500s injected, gets the same counts as the embedded run on
the same seed and parameters; every request and response of the run is valid under Adobe's OpenAPI
specs (:mod:`tests.contract`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession

from tests.conftest import PROJECT
from tests.contract import conformance, figures
from tests.emulator_process import CLIENT_SECRET, running_emulator
from tests.run_figures import counts

pytestmark = pytest.mark.postgres


def test_emulator_run_matches_the_embedded_run(tmp_path: Path, kedro_session, monkeypatch) -> None:
    with kedro_session() as session:
        session.run()
    with kedro_session() as session:
        embedded = counts(session)

    conf = tmp_path / "conf"
    for parameters in (conf / "test").glob("parameters_*.yml"):  # the same small parameters
        shutil.copy(parameters, conf / "emulator" / parameters.name)
    globals_file = conf / "emulator" / "globals.yml"
    text = globals_file.read_text().replace("data_root: data/emulator_run", f"data_root: {tmp_path / 'aep_run'}")
    globals_file.write_text(text)
    traffic = tmp_path / "traffic.jsonl"  # every exchange, validated against Adobe's specs below
    with running_emulator(tmp_path / "emulator", record=traffic) as emulator:
        monkeypatch.setenv("AEP_EMULATOR_URL", emulator.url)
        monkeypatch.setenv("AEP_CLIENT_SECRET", CLIENT_SECRET)
        emulator.set_faults({"rate_limit_every": 23, "retry_after": 0, "error_every": 37})
        with KedroSession.create(project_path=PROJECT, env="emulator", conf_source=str(conf)) as session:
            session.run()
        with KedroSession.create(project_path=PROJECT, env="emulator", conf_source=str(conf)) as session:
            through_aep = counts(session)
        injected = emulator.injected_faults()

    assert embedded["profiles"] == 3_000 and embedded["events"] > 10_000
    assert embedded["members"] and all(files for files, _ in embedded["delivered"].values())
    assert injected >= 10  # the run met AEP's transient errors and retried through them
    assert through_aep == embedded
    report = conformance.validate(traffic)  # Adobe's contract, on the traffic of this run (tests/contract)
    print("\n".join(figures.figures(report)))  # noqa: T201 - the coverage figures, shown with -s
    assert not report.failures(), "\n".join(f"{f.operation} [{f.where}] {f.message}" for f in report.failures())
