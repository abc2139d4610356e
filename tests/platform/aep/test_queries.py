"""Query Service connections: parameters fetched once per token, renewed when the token is or when a
connection is refused for authentication (a fake client and psycopg2.connect: no server needed)."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest

from aep_propensity.platform.aep import AEPError
from aep_propensity.platform.aep.queries import QueryService

REFUSED = 'connection to server at "qs.example" failed: FATAL:  password authentication failed for user "u"'


class FakeClient:
    """The client calls QueryService makes for a connection: its token, renewing it, the parameters."""

    timeout_seconds = 5.0

    def __init__(self) -> None:
        self.tokens = ["token-1"]
        self.fetched = 0

    def token(self) -> str:
        return self.tokens[-1]

    def renew_token(self) -> str:
        self.tokens.append(f"token-{len(self.tokens) + 1}")
        return self.token()

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        assert path.endswith("/query/connection_parameters")
        self.fetched += 1
        return {"host": "qs.example", "port": 80, "dbName": "prod:all", "username": "u", "token": self.token()}


class FakeConnection:
    def close(self) -> None:
        pass


def connector(monkeypatch: pytest.MonkeyPatch, *failures: str) -> list[str]:
    """Make psycopg2.connect fail with ``failures`` in turn, then succeed; the passwords it was given."""
    passwords: list[str] = []
    pending = list(failures)

    def connect(**kwargs: Any) -> FakeConnection:
        passwords.append(kwargs["password"])
        if pending:
            raise psycopg2.OperationalError(pending.pop(0))
        return FakeConnection()

    monkeypatch.setattr(psycopg2, "connect", connect)
    return passwords


def service(client: FakeClient) -> QueryService:
    return QueryService(client, exports=None, dialect="postgres", sslmode="disable")  # type: ignore[arg-type]


def test_parameters_are_fetched_once_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = connector(monkeypatch)
    client = FakeClient()
    queries = service(client)
    for _ in range(3):
        with queries.connect():
            pass
    assert client.fetched == 1
    client.renew_token()  # the client renewed its token (it expired): the parameters go with it
    with queries.connect():
        pass
    assert client.fetched == 2 and passwords == ["token-1"] * 3 + ["token-2"]


def test_a_connection_refused_for_authentication_renews_the_token_once(monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = connector(monkeypatch, REFUSED)
    client = FakeClient()
    with service(client).connect() as conn:
        assert isinstance(conn, FakeConnection)
    assert passwords == ["token-1", "token-2"] and client.fetched == 2


def test_a_second_refusal_is_an_aep_error(monkeypatch: pytest.MonkeyPatch) -> None:
    connector(monkeypatch, REFUSED, REFUSED)
    client = FakeClient()
    with pytest.raises(AEPError, match="password authentication failed"), service(client).connect():
        pass
    assert client.tokens == ["token-1", "token-2"]  # renewed once, not in a loop


def test_other_connection_failures_renew_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    connector(monkeypatch, 'connection to server at "qs.example" failed: Connection refused')
    client = FakeClient()
    with pytest.raises(AEPError, match="at qs.example:80 failed: .*Connection refused"), service(client).connect():
        pass
    assert client.tokens == ["token-1"] and client.fetched == 1
