"""No secret in any log at any level (issue 12, item 6), with a canary client secret given as users give it.

Every logger at DEBUG (a ``KEDRO_LOGGING_CONFIG`` file, the emulator's ``--log-level debug``), the
canary in ``AEP_CLIENT_SECRET`` for Kedro and ``--client-secret`` for the emulator: a tiny
``kedro run --env emulator``, then ``kedro viz build`` with the project's hooks, and a client asking
for a token with the secret in the query string (which the emulator's access log, on at DEBUG, logs).
The canary is in none of their outputs, their log file or the emulator's log, nor is any access token
the emulator issued; yet it reached the programs: the emulator gave the run a token for it, and
Kedro's hook tracing logged the credentials (at DEBUG it logs ``conf_creds``), the secret masked.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
import requests
import yaml

from tests.emulator_process import CLIENT_ID, running_emulator
from tests.project_copy import copy_project, output_tail, run_shell

pytestmark = pytest.mark.postgres

#: A tiny run of every pipeline (the copy's base parameters are already the test environment's).
RUN = "kedro run --env emulator --params data_generation.people=200,data_generation.people_per_chunk=200"
VIZ = "KEDRO_ENV=emulator kedro viz build --include-hooks --include-previews"
#: How the emulator's access tokens look ("emu-" and 48 random bytes, URL-safe base64).
ACCESS_TOKEN = re.compile(r"emu-[\w-]{64}")
MASKED_CREDENTIAL = "'client_secret': '***'"


def debug_logging(log_file: Path) -> dict:
    """A logging configuration with every logger at DEBUG, to stdout and to ``log_file`` (plain lines, no wrapping)."""
    line = {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}
    handlers = {
        "console": {
            "class": "logging.StreamHandler",
            "level": "DEBUG",
            "formatter": "line",
            "stream": "ext://sys.stdout",
        },
        "file": {"class": "logging.FileHandler", "level": "DEBUG", "formatter": "line", "filename": str(log_file)},
    }
    root = {"level": "DEBUG", "handlers": list(handlers)}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": line},
        "handlers": handlers,
        "root": root,
    }


def test_no_secret_in_any_log_at_debug(tmp_path: Path, monkeypatch) -> None:
    canary = f"canary-{secrets.token_hex(16)}"
    project = copy_project(tmp_path / "project")
    log_file = tmp_path / "kedro-debug.log"
    logging_file = tmp_path / "logging.yml"
    logging_file.write_text(yaml.safe_dump(debug_logging(log_file)))
    with running_emulator(tmp_path / "emulator", client_secret=canary, log_level="debug") as emulator:
        monkeypatch.setenv("KEDRO_LOGGING_CONFIG", str(logging_file))
        monkeypatch.setenv("AEP_EMULATOR_URL", emulator.url)
        monkeypatch.setenv("AEP_CLIENT_SECRET", canary)
        run = run_shell(RUN, project, timeout=600)
        assert run.returncode == 0, output_tail(run)
        viz = run_shell(VIZ, project)
        assert viz.returncode == 0, output_tail(viz)
        grant = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": canary}
        requests.post(f"{emulator.url}/ims/token/v3", params=grant, timeout=10).raise_for_status()
    emulator_log = emulator.log.read_text()

    logs = {
        "kedro run": run.stdout + run.stderr,
        "kedro viz build": viz.stdout + viz.stderr,
        "the DEBUG log file": log_file.read_text(),
        "the emulator's log": emulator_log,
    }
    leaks = {name: text.count(canary) for name, text in logs.items() if canary in text}
    assert not leaks, f"the client secret is logged: {leaks}"
    tokens = {name: len(ACCESS_TOKEN.findall(text)) for name, text in logs.items() if ACCESS_TOKEN.search(text)}
    assert not tokens, f"an access token is logged: {tokens}"

    # The canary reached the programs, at DEBUG: the emulator accepted it, Kedro traced it (masked).
    assert "Obtained an IMS access token" in logs["kedro run"]
    assert MASKED_CREDENTIAL in logs["kedro run"] and MASKED_CREDENTIAL in logs["kedro viz build"]
    assert " - DEBUG - " in logs["the DEBUG log file"]
    assert (
        '"POST /ims/token/v3?grant_type=client_credentials&client_id=emulator-client&client_secret=***' in emulator_log
    )
