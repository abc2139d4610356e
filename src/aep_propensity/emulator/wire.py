"""Query Service's PostgreSQL wire with AEP's row cap: a relay between wire clients and the emulator's
PostgreSQL.

AEP's Query Service returns at most 50,000 rows of a query to a PostgreSQL client
(https://experienceleague.adobe.com/en/docs/experience-platform/query/guardrails); the emulator's
PostgreSQL has no such cap, so the connection parameters (:mod:`.queries`) name this relay instead.
It listens on a port of its own (``--wire-port``, a free one by default) and passes bytes both ways:
an SSLRequest or GSSENCRequest is answered ``N`` (the client goes on in plain text, as
``sslmode=prefer`` allows), the startup and authentication messages pass through unchanged, and so
does a CancelRequest (the client holds the server's own backend key). The server's messages (a type
byte, then an int32 length) are read as they pass: once the DataRow (``D``) and COPY-out CopyData
(``d``, one per row in the text and CSV formats, a CSV header line counted too) messages since the
last ReadyForQuery exceed the ``interactive_rows`` limit (:data:`.config.LIMITS`, lowered by the
``limits`` fault), the client gets one ErrorResponse (SQLSTATE ``54000``, program limit exceeded:
AEP documents no code of its own) and nothing more of that query but its ReadyForQuery. The server
still runs the statement to its end, and a transaction block it ran in is not aborted there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: The request codes of a client's first packet that ask for an encrypted connection.
ENCRYPTION_REQUESTS = frozenset({80877103, 80877104})  # SSLRequest, GSSENCRequest
#: PostgreSQL's bound on a startup packet's length.
MAX_STARTUP_BYTES = 10_000
ROW_LIMIT_CODE = "54000"
_ROWS = frozenset(b"Dd")  # DataRow, CopyData
_READY = ord("Z")  # ReadyForQuery
_CHUNK = 1 << 16


def error_response(message: str, code: str = ROW_LIMIT_CODE) -> bytes:
    """A backend ErrorResponse message of severity ERROR with SQLSTATE ``code`` and ``message``."""
    fields = ((b"S", "ERROR"), (b"V", "ERROR"), (b"C", code), (b"M", message))
    body = b"".join(tag + value.encode() + b"\0" for tag, value in fields) + b"\0"
    return b"E" + (len(body) + 4).to_bytes(4, "big") + body


def row_limit_message(limit: int) -> str:
    """What a client whose query passed the cap is told."""
    return (
        f"interactive query returned more than {limit:,} rows, Query Service's limit for a PostgreSQL "
        "client; read bulk data through a dataset export"
    )


class RowCap:
    """The server-to-client half of one connection: its messages passed on, except that a query's
    rows past the cap become one ErrorResponse and the rest of the query up to its ReadyForQuery is
    dropped."""

    def __init__(self, cap: Callable[[], int]) -> None:
        self._cap = cap
        self._buffer = bytearray()
        self._rows = 0
        self._limit = 0
        self._over = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to send the client for ``data`` from the server (an incomplete message is kept)."""
        buffer, out, start = self._buffer, bytearray(), 0
        buffer += data
        while len(buffer) - start >= 5:
            end = start + 1 + int.from_bytes(buffer[start + 1 : start + 5], "big")
            if end > len(buffer):
                break
            out += self._message(buffer[start], buffer[start:end])
            start = end
        del buffer[:start]
        return bytes(out)

    def _message(self, kind: int, message: bytes) -> bytes:
        """What one whole server message becomes: itself, the cap's ErrorResponse, or nothing."""
        if kind == _READY:
            self._rows, self._over = 0, False
            return message
        if self._over:
            return b""
        if kind in _ROWS:
            if self._rows == 0:  # the cap in force when the query's first row comes
                self._limit = self._cap()
            self._rows += 1
            if self._rows > self._limit:
                self._over = True
                return error_response(row_limit_message(self._limit))
        return message


async def read_startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The client's first packet that is not an encryption request (each answered ``N``: plain text),
    or ``b""`` when the client closes first or sends a packet no server would take."""
    while True:
        try:
            head = await reader.readexactly(8)
            length = int.from_bytes(head[:4], "big")
            if not 8 <= length <= MAX_STARTUP_BYTES:
                return b""
            packet = head + await reader.readexactly(length - 8)
        except asyncio.IncompleteReadError:
            return b""
        if int.from_bytes(head[4:], "big") not in ENCRYPTION_REQUESTS:
            return packet
        writer.write(b"N")
        await writer.drain()


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transform: Callable[[bytes], bytes] | None = None
) -> None:
    """Copy ``reader`` to ``writer`` (through ``transform``) until the reader ends or either side fails,
    then close ``writer`` (which ends the opposite pump too)."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(transform(data) if transform else data)
            await writer.drain()
    except OSError:  # a reset connection ends the relay like a closed one
        pass
    finally:
        writer.close()


async def open_server(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the PostgreSQL server at ``host``:``port``, or at the Unix socket of ``port`` in the
    directory ``host`` names when it is a path (as libpq reads a host that starts with ``/``)."""
    if host.startswith("/"):
        return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
    return await asyncio.open_connection(host, port)


class Relay:
    """A loopback listener relaying PostgreSQL wire connections to ``upstream`` (host or socket
    directory, and port: :func:`open_server`) under the row cap ``cap()`` (read at each query's first row)."""

    def __init__(self, upstream: tuple[str, int], cap: Callable[[], int]) -> None:
        self.upstream = upstream
        self.cap = cap
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int = 0) -> None:
        """Listen on ``host``:``port`` (0: a free port)."""
        self._server = await asyncio.start_server(self._serve, host, port)

    @property
    def port(self) -> int:
        """The port the relay listens on."""
        assert self._server is not None, "the relay is not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end every open connection (both its sockets closed)."""
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one client connection to the upstream server, its task tracked for :meth:`close`."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        except OSError as exc:
            logger.warning("Query Service wire connection failed: %s", exc)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the client's encryption requests, then pump both ways until either side closes."""
        packet = await read_startup(reader, writer)
        if not packet:
            return
        server_reader, server_writer = await open_server(*self.upstream)
        server_writer.write(packet)
        async with asyncio.TaskGroup() as group:
            group.create_task(pump(reader, server_writer))
            group.create_task(pump(server_reader, writer, RowCap(self.cap).feed))
