"""The emulator for its contract tests (tests/emulator_process.py) and a minimal AEP caller."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.emulator_process import CLIENT_ID, CLIENT_SECRET, ORG_ID, RunningEmulator, running_emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """A running emulator shared by a test module."""
    with running_emulator(tmp_path_factory.mktemp("emulator")) as running:
        yield running


def fetch_token(url: str, client_id: str | bytes = CLIENT_ID, secret: str | bytes = CLIENT_SECRET) -> requests.Response:
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
