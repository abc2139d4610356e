"""A real emulator: ``python -m aep_propensity.emulator.cli`` on a free loopback port, fresh PG schema."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from tests.conftest import PG_DSN, require_postgres

CLIENT_ID, CLIENT_SECRET, ORG_ID, TENANT = "emulator-client", "emulator-secret", "EMULATOR@AdobeOrg", "acme"


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
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The emulator's root URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process and wait until it answers its health check."""
        command = [sys.executable, "-m", "aep_propensity.emulator.cli", "--port", str(self.port)]
        command += ["--dsn", PG_DSN, "--schema", self.schema, "--data-dir", str(self.data_dir)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
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
            self.process.wait(timeout=15)

    def restart(self) -> None:
        """Stop and start again on the same port, schema and data folder."""
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """A running emulator in a fresh PostgreSQL schema, dropped at the end."""
    require_postgres()
    folder = tmp_path_factory.mktemp("emulator")
    running = RunningEmulator(free_port(), f"test_emu_{uuid.uuid4().hex[:10]}", folder / "data", folder / "log.txt")
    running.start()
    try:
        yield running
    finally:
        running.stop()
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{running.schema}" CASCADE')
        conn.close()


def fetch_token(url: str, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> requests.Response:
    """POST the client-credentials grant to the emulator's IMS endpoint."""
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": "openid"}
    return requests.post(url + "/ims/token/v3", data=data, timeout=10)


class AEPClient:
    """A minimal AEP caller: a token and the four headers on every call."""

    def __init__(self, url: str, sandbox: str = "dev") -> None:
        self.url = url
        self.token = fetch_token(url).json()["access_token"]
        self.headers = {
            "Authorization": f"Bearer {self.token}",
            "x-api-key": CLIENT_ID,
            "x-gw-ims-org-id": ORG_ID,
            "x-sandbox-name": sandbox,
        }

    def call(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """One request with the standard headers (overridable)."""
        merged = {**self.headers, **(headers or {})}
        return requests.request(method, self.url + path, headers=merged, timeout=30, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """A request that must answer ``status``; its JSON body (None when empty)."""
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def poll(self, path: str, done: Any, timeout: float = 20) -> Any:
        """GET ``path`` until ``done(body)`` is true; the last body."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.ok("GET", path)
            if done(body) or time.monotonic() > deadline:
                return body
            time.sleep(0.1)


@pytest.fixture(scope="module")
def client(emulator: RunningEmulator) -> AEPClient:
    """A client with a fresh token."""
    return AEPClient(emulator.url)
