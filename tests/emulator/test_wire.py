"""Query Service's PostgreSQL wire (:mod:`aep_propensity.emulator.wire`): the connection parameters name the
emulator's relay, which returns at most ``interactive_rows`` rows of a query (AEP's 50,000, lowered here by
the ``limits`` fault) to any client and passes everything else through."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from aep_propensity.emulator import wire
from aep_propensity.emulator.cli import parse_args
from aep_propensity.emulator.config import LIMITS
from aep_propensity.emulator.queries import server_address
from tests.conftest import PG_DSN
from tests.emulator_process import RunningEmulator

from .conftest import AEPClient
from .helpers import QUERY
from .test_safety import aep_connection

CAP = 5
SERIES = "SELECT generate_series(1, {})"
SOCKET_DIR = "/var/run/postgresql"  # Debian's


@pytest.fixture(scope="module")
def params(client: AEPClient) -> dict[str, Any]:
    """The emulator's Query Service connection parameters."""
    return client.ok("GET", QUERY + "/connection_parameters")


@pytest.fixture
def capped(emulator: RunningEmulator) -> Iterator[None]:
    """An interactive row cap of :data:`CAP` for one test, then AEP's again."""
    emulator.set_faults({"limits": {"interactive_rows": CAP}})
    yield
    emulator.set_faults({})


@pytest.fixture
def conn(params: dict[str, Any]) -> Iterator[psycopg2.extensions.connection]:
    """A plain psycopg2 connection made from the connection parameters only."""
    connection = aep_connection(params)
    try:
        yield connection
    finally:
        connection.close()


def rows(conn: psycopg2.extensions.connection, sql: str) -> list[tuple]:
    """The rows of ``sql`` on ``conn``."""
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_parameters_name_the_relay(params: dict[str, Any]) -> None:
    """The connection parameters name the relay's loopback port, not PostgreSQL's."""
    assert params["host"] == "127.0.0.1" and params["port"] != server_address(PG_DSN)[1]


@pytest.mark.usefixtures("capped")
def test_a_query_past_the_cap_fails_and_the_connection_stays_usable(conn: psycopg2.extensions.connection) -> None:
    """``CAP + 1`` rows are the relay's error (54000); after a rollback the same connection runs the next query."""
    with pytest.raises(psycopg2.Error) as failure:
        rows(conn, SERIES.format(CAP + 1))
    assert failure.value.pgcode == wire.ROW_LIMIT_CODE
    assert f"returned more than {CAP:,} rows" in failure.value.diag.message_primary
    assert "export" in failure.value.diag.message_primary
    conn.rollback()
    assert rows(conn, "SELECT 42") == [(42,)]


@pytest.mark.usefixtures("capped")
def test_a_query_of_cap_rows_passes_whole(conn: psycopg2.extensions.connection) -> None:
    """``CAP`` rows arrive whole, query after query (the count restarts at each ReadyForQuery)."""
    for _ in range(3):
        assert rows(conn, SERIES.format(CAP)) == [(n,) for n in range(1, CAP + 1)]


@pytest.mark.usefixtures("capped")
def test_copy_out_rows_count_too(conn: psycopg2.extensions.connection) -> None:
    """``COPY ... TO STDOUT`` is capped as a query is: ``CAP`` rows pass, one more is the relay's error."""
    out = io.StringIO()
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY ({SERIES.format(CAP)}) TO STDOUT", out)
        assert out.getvalue().split() == [str(n) for n in range(1, CAP + 1)]
        with pytest.raises(psycopg2.Error) as failure:
            cur.copy_expert(f"COPY ({SERIES.format(CAP + 1)}) TO STDOUT", io.StringIO())
    assert failure.value.pgcode == wire.ROW_LIMIT_CODE
    conn.rollback()
    assert rows(conn, "SELECT 1") == [(1,)]


def test_multi_statement_and_server_errors_pass_through(conn: psycopg2.extensions.connection) -> None:
    """A multi-statement query returns its last result; the server's own errors reach the client as they are."""
    assert rows(conn, "SELECT 1; SELECT 2 AS two UNION ALL SELECT 3") == [(2,), (3,)]
    with pytest.raises(psycopg2.Error) as failure:
        rows(conn, "SELECT 1/0")
    assert failure.value.pgcode == "22012"
    conn.rollback()
    with pytest.raises(psycopg2.Error) as failure:
        rows(conn, "SELECT * FROM no_such_table")
    assert failure.value.pgcode == "42P01"
    conn.rollback()
    assert rows(conn, "SELECT 'ok'") == [("ok",)]


def message(kind: bytes, body: bytes = b"") -> bytes:
    """One backend message: its type byte, its int32 length and ``body``."""
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def test_row_cap_parses_messages_split_anywhere() -> None:
    """Fed a byte at a time, the cap passes what it passes whole and cuts the same query at the same row."""
    query = message(b"T", b"x") + message(b"D", b"1") * 3 + message(b"C", b"SELECT 3\0") + message(b"Z", b"I")
    whole = wire.RowCap(lambda: 2).feed(query * 2)
    cap = wire.RowCap(lambda: 2)
    assert b"".join(cap.feed(query[i : i + 1]) for i in range(len(query))) * 2 == whole
    error = wire.error_response(wire.row_limit_message(2))
    assert whole == (message(b"T", b"x") + message(b"D", b"1") * 2 + error + message(b"Z", b"I")) * 2


@pytest.mark.parametrize("socket_dir", [None, SOCKET_DIR])
def test_relay_closes_its_connections(socket_dir: str | None) -> None:
    """Over TCP or a Unix socket upstream, closing the relay ends its open connections: no task of it is
    left and the client's connection is broken."""
    host, port = server_address(PG_DSN)
    if socket_dir is not None and not Path(socket_dir, f".s.PGSQL.{port}").exists():
        pytest.skip(f"no PostgreSQL socket in {socket_dir}")

    async def scenario() -> set[asyncio.Task]:
        relay = wire.Relay((socket_dir or host, port), lambda: LIMITS["interactive_rows"])
        await relay.start("127.0.0.1")
        dsn = psycopg2.extensions.make_dsn(PG_DSN, host="127.0.0.1", port=relay.port)
        client = await asyncio.to_thread(psycopg2.connect, dsn)
        assert await asyncio.to_thread(rows, client, "SELECT 7") == [(7,)]
        await relay.close()
        with pytest.raises(psycopg2.OperationalError):
            await asyncio.to_thread(rows, client, "SELECT 8")
        client.close()
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(scenario()) == set()


def test_wire_port_option_and_limit_default() -> None:
    """``--wire-port`` picks the relay's port (default 0: a free one); the cap is AEP's 50,000 rows."""
    assert parse_args(["--wire-port", "6543"])[0].wire_port == 6543 and parse_args([])[0].wire_port == 0
    assert LIMITS["interactive_rows"] == 50_000
