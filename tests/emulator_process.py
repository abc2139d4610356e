"""A real AEP emulator for tests: ``aep-emulator`` as a subprocess on a free loopback port, in its own
PostgreSQL schema (dropped afterwards) and data folder. Shared by the emulator's contract tests, the
aep backend's tests and the end-to-end run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests

from aep_propensity.platform import identifier
from tests.conftest import PG_DSN, require_postgres

CLIENT_ID, CLIENT_SECRET, ORG_ID, TENANT = "emulator-client", "emulator-secret-for-tests", "EMULATOR@AdobeOrg", "acme"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningEmulator:
    """An emulator subprocess and what a test needs to talk to it."""

    port: int
    schema: str
    data_dir: Path
    log: Path
    client_secret: str = field(default=CLIENT_SECRET, repr=False)
    log_level: str = "info"
    dsn: str = PG_DSN
    record: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The emulator's root URL (AEP's gateway and IMS both)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process (with none of the caller's AEP_EMULATOR_* variables) and wait for its health check."""
        command = [sys.executable, "-m", "aep_propensity.emulator.cli", "--port", str(self.port), "--dsn", self.dsn]
        command += ["--schema", self.schema, "--data-dir", str(self.data_dir), "--client-secret", self.client_secret]
        command += ["--log-level", self.log_level]
        command += ["--record", str(self.record)] if self.record else []
        env = {key: value for key, value in os.environ.items() if not key.startswith("AEP_EMULATOR_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"emulator exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/emulator/health", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("emulator did not answer within 30 s")

    def stop(self) -> None:
        """Terminate the process (and wait for it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port, schema and data folder."""
        self.stop()
        self.start()

    def bearer(self) -> dict[str, str]:
        """An ``Authorization`` header with a fresh token, as the emulator's own endpoints need."""
        data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": self.client_secret}
        answer = requests.post(f"{self.url}/ims/token/v3", data=data, timeout=10)
        answer.raise_for_status()
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def set_faults(self, faults: dict) -> None:
        """Replace the emulator's fault switches (its test-only endpoint)."""
        requests.post(f"{self.url}/emulator/faults", json=faults, headers=self.bearer(), timeout=10).raise_for_status()

    def injected_faults(self) -> int:
        """How many 429s and 500s the fault switches injected since they were set."""
        answer = requests.get(f"{self.url}/emulator/faults", headers=self.bearer(), timeout=10)
        answer.raise_for_status()
        return int(answer.json()["injected"])


@contextmanager
def running_emulator(
    folder: Path, client_secret: str = CLIENT_SECRET, log_level: str = "info", record: Path | None = None
) -> Iterator[RunningEmulator]:
    """A running emulator in a fresh PostgreSQL schema, files under ``folder``, its log ``folder/log.txt``,
    its traffic recorded to ``record`` if given (:mod:`aep_propensity.emulator.recording`); schema dropped
    at the end."""
    require_postgres()
    folder.mkdir(parents=True, exist_ok=True)
    schema, data, log = f"test_emu_{uuid.uuid4().hex[:10]}", folder / "data", folder / "log.txt"
    emulator = RunningEmulator(free_port(), schema, data, log, client_secret, log_level, record=record)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
        for schema in (emulator.schema, f"{emulator.schema}_state"):  # its datasets and its own state
            drop_schema(schema)
        drop_role(f"{emulator.schema}_query")  # its Query Service role (roles are cluster-wide)


def drop_schema(schema: str) -> None:
    """Drop a PostgreSQL schema and everything in it."""
    conn = psycopg2.connect(PG_DSN)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {identifier(schema)} CASCADE")
    finally:
        conn.close()


def drop_role(role: str) -> None:
    """Drop a PostgreSQL role (and its privileges in this database) if it exists."""
    conn = psycopg2.connect(PG_DSN)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if cur.fetchone():
                cur.execute(f"DROP OWNED BY {identifier(role)}")
                cur.execute(f"DROP ROLE {identifier(role)}")
    finally:
        conn.close()
