"""Query Service (``/data/foundation/query``): connection parameters and the asynchronous queries API.

The emulator's PostgreSQL is its Query Service, reached two ways, both as the emulator's Query
Service role (``<schema>_query``, :class:`~.service.QueryRole`): clients connect to PostgreSQL with
the connection parameters (AEP's keys only: host, port, dbName, username, token), through the
emulator's wire relay, which caps the rows of a query as AEP does (:mod:`.wire`), and the queries
API runs SQL in a background thread. The role's default search path is the data schema, so a
client that sets none sees the dataset tables, as on AEP; it reads and writes the tables there, and
nothing else: not the emulator's own state (``<schema>_state``), not the local platform's tables
(``ledger_*``, ``_batch_*``, kept from it whatever SQL it runs, a ``DO`` block included), not server
files, not other schemas. (A batch's staging table gets the schema's default privileges when it is
made; they are taken back before every queries-API statement and every connection-parameters call,
so a wire client could write to one made in between.) PostgreSQL's own authentication applies to
the wire: the token is the password the parameters carry, which PostgreSQL checks only if its
``pg_hba.conf`` asks for one (the role's real password is a secret of the emulator). When the DSN's
user cannot create roles, Query Service refuses user SQL (503) rather than run it with the
emulator's privileges.

The queries API also refuses statements that create, drop, alter or write a table of the local
platform by name, before running them. A ``CREATE TABLE ... AS`` registers its table as a dataset
(with the ``adobe/pqs/table`` tag, so it can be exported); ``DROP TABLE`` removes the dataset of
that table.

Each query runs under a ``statement_timeout`` (``--query-timeout-seconds``, 600 by default: Query
Service's 10-minute ad-hoc limit); one that exceeds it FAILS with AEP's code ``53400``. Cancelling
(``PATCH {"op": "cancel"}``) marks the query KILLED and cancels its statement in PostgreSQL
(``pg_cancel_backend``); a query cancelled after its statement ended is rolled back, so a KILLED
query never leaves a table behind.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import sqlglot
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlglot import exp

from aep_propensity.platform.core.port import check_name
from aep_propensity.platform.core.sql import identifier

from .catalog import PQS_TAG, RESERVED_PREFIXES, new_dataset, table_of
from .errors import bad_request, of_kind, service_error
from .service import Emulator, EmulatorDep, JsonObject, QueryRole, iso_now, revoke_platform_tables

router = APIRouter(prefix="/data/foundation/query")

_INVALID = "QS-1400-400"
_NOT_FOUND = "QS-1404-404"
_FINAL = ("SUCCESS", "FAILED", "KILLED", "TIMEOUT")
_TIMEOUT_CODE = "53400"
_NO_ROLE = "EMU-5030-503"
_TARGETS = (exp.Create, exp.Drop, exp.Alter, exp.Insert, exp.Delete, exp.Update)


class _Killed(Exception):
    """The query was cancelled while its statement ran: its transaction is rolled back."""


def bearer_token(request: Request) -> str:
    """The caller's access token (already checked by the header middleware)."""
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


def query_role(emu: Emulator) -> QueryRole:
    """The role user SQL runs as, its privileges on the local platform's tables revoked again (staging
    tables come and go); a 503 when the emulator has no such role."""
    role = emu.query_role
    if role is None:
        message = "Query Service is off: the emulator's PostgreSQL user cannot create its Query Service role"
        raise service_error(503, _NO_ROLE, message, "QS")
    with emu.store.transaction() as cur:
        revoke_platform_tables(cur, emu.config.schema, role.name)
    return role


@contextmanager
def role_connection(emu: Emulator, role: QueryRole) -> Iterator[psycopg2.extensions.connection]:
    """A connection to PostgreSQL as the Query Service role, closed (uncommitted work rolled back) at the end."""
    with closing(psycopg2.connect(role.dsn(emu.config.dsn), connect_timeout=10)) as conn:
        yield conn


def server_address(dsn: str) -> tuple[str, int]:
    """The host and port of the PostgreSQL server a DSN names (127.0.0.1:5432 by default)."""
    parsed = psycopg2.extensions.parse_dsn(dsn)
    return parsed.get("host", "127.0.0.1"), int(parsed.get("port", 5432))


@router.get("/connection_parameters")
def connection_parameters(request: Request, emu: EmulatorDep) -> dict[str, Any]:
    """Where the Query Service listens: the emulator's wire relay to its PostgreSQL (:mod:`.wire`, which
    caps a query's rows as AEP does), as its Query Service role (AEP's keys only: the role's default
    search path is the data schema)."""
    role = query_role(emu)
    token = bearer_token(request)
    return {
        "username": role.name,
        "dbName": psycopg2.extensions.parse_dsn(emu.config.dsn).get("dbname", "postgres"),
        "host": emu.config.host,
        "port": emu.wire_port,
        "version": 1,
        "token": token,
        "compressedToken": token,
        "websocketHost": f"{emu.config.host}:{emu.config.port}",
    }


def _statement_sql(request: dict[str, Any]) -> str:
    """The SQL to run for a query request, turning ``ctasParameters``/``insertIntoParameters`` into SQL."""
    sql = str(request["sql"]).strip().rstrip(";")
    ctas = request.get("ctasParameters") or {}
    insert = request.get("insertIntoParameters") or {}
    if ctas.get("datasetName"):
        return f"CREATE TABLE {identifier(check_name(ctas['datasetName']))} AS {sql}"
    if insert.get("datasetName"):
        return f"INSERT INTO {identifier(check_name(insert['datasetName']))} {sql}"
    return sql


@router.post("/queries", status_code=202)
def create_query(request: Request, body: JsonObject, emu: EmulatorDep) -> dict:
    """Accept a query (``SUBMITTED``) and run it in the background."""
    if body.get("templateId"):
        raise bad_request("query templates are not supported by the emulator; send sql", "QS", _INVALID)
    _check_kinds(body)
    if not body.get("sql") or not body.get("dbName"):
        raise bad_request("a query needs dbName and sql", "QS", _INVALID)
    query_role(emu)
    try:
        sql = _statement_sql(body)
    except ValueError as exc:
        raise bad_request(str(exc), "QS", _INVALID) from None
    reserved = reserved_target(sql)
    if reserved:
        raise bad_request(f"table {reserved!r} is reserved by the emulator's local platform", "QS", _INVALID)
    query_id = str(uuid.uuid4())
    href = f"{emu.config.base_url}/data/foundation/query/queries/{query_id}"
    query = {
        "isInsertInto": bool((body.get("insertIntoParameters") or {}).get("datasetName")),
        "request": {key: body.get(key) for key in ("dbName", "sql", "name", "description")},
        "state": "SUBMITTED",
        "rowCount": 0,
        "errors": [],
        "isCTAS": bool((body.get("ctasParameters") or {}).get("datasetName")),
        "version": 1,
        "id": query_id,
        "elapsedTime": 0,
        "effectiveSQL": sql,
        "updated": iso_now(),
        "created": iso_now(),
        "client": "API",
        "userId": emu.config.client_id,
        "_links": {
            "self": {"href": href, "method": "GET"},
            "soft_delete": {"href": href, "method": "PATCH", "body": '{ "op": "soft_delete"}'},
            "cancel": {"href": href, "method": "PATCH", "body": '{ "op": "cancel"}'},
        },
    }
    emu.store.put("queries", query_id, query)
    submit_query(emu, query_id)
    return query


def _check_kinds(body: dict[str, Any]) -> None:
    """A 400 naming the first field of a query request of the wrong JSON type: ``dbName`` and ``sql``
    are strings, ``ctasParameters`` and ``insertIntoParameters`` objects."""
    for field, kind in (("dbName", str), ("sql", str), ("ctasParameters", dict), ("insertIntoParameters", dict)):
        of_kind(body.get(field), kind, field, "QS", _INVALID)


def reserved_target(sql: str) -> str | None:
    """The table a statement creates, drops, alters or writes if its name is the local platform's
    (``ledger_*``, ``_batch_*``); None otherwise, or when sqlglot cannot parse the SQL."""
    try:
        statements = sqlglot.parse(sql, read="postgres")
    except sqlglot.errors.ParseError:
        return None
    for statement in statements:
        table = statement.find(exp.Table) if isinstance(statement, _TARGETS) else None
        if table is not None and table.name.lower().startswith(RESERVED_PREFIXES):
            return table.name
    return None


def submit_query(emu: Emulator, query_id: str) -> None:
    """Run a query in the background; if the run dies unexpectedly, the query FAILS."""

    def crashed(message: str) -> None:
        error = {"code": "58000", "message": message, "errorType": "SYSTEM_ERROR"}
        _finish(emu, query_id, "FAILED", errors=[error])

    emu.submit(run_query, emu, query_id, on_crash=crashed)


@router.get("/queries")
def list_queries(emu: EmulatorDep, limit: int = 20) -> dict[str, Any]:
    """The latest queries, newest first."""
    queries = list(reversed(emu.store.all("queries")))[: max(1, min(limit, 1000))]
    return {
        "queries": queries,
        "_page": {"orderby": "-created", "start": None, "next": None, "count": len(queries)},
        "_links": {},
        "version": 1,
    }


@router.get("/queries/{query_id}")
def get_query(query_id: str, emu: EmulatorDep) -> dict[str, Any]:
    """One query with its state."""
    return emu.store.get_or_404("queries", query_id, "query", "QS", _NOT_FOUND)


@router.patch("/queries/{query_id}", status_code=202)
def patch_query(query_id: str, body: JsonObject, emu: EmulatorDep) -> JSONResponse:
    """``{"op": "cancel"}`` marks an unfinished query KILLED; ``soft_delete`` hides nothing here."""
    get_query(query_id, emu)
    if body.get("op") not in ("cancel", "soft_delete"):
        raise bad_request("op must be cancel or soft_delete", "QS", _INVALID)
    if body["op"] == "cancel":
        cancel_query(emu, query_id)
        return JSONResponse({"message": "Query cancel request received", "statusCode": 202}, status_code=202)
    return JSONResponse({"message": "Query soft delete request received", "statusCode": 202}, status_code=202)


def _finish(emu: Emulator, query_id: str, state: str, **fields: Any) -> None:
    """Move an unfinished query to ``state`` (a finished one keeps its state)."""

    def change(query: dict[str, Any]) -> None:
        if query["state"] not in _FINAL:
            query.update(fields, state=state, updated=iso_now())

    emu.store.update("queries", query_id, change)


def cancel_query(emu: Emulator, query_id: str) -> None:
    """Mark an unfinished query KILLED and cancel its statement if it is running now."""
    with emu.query_lock:
        _finish(emu, query_id, "KILLED")
        backend = emu.query_backends.get(query_id)
        if backend is not None and emu.query_role is not None:  # the role may cancel its own statements
            with role_connection(emu, emu.query_role) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_cancel_backend(%s)", [backend])


def _start(emu: Emulator, query_id: str) -> dict[str, Any] | None:
    """Move a SUBMITTED query to IN_PROGRESS; the query, or None when it is gone or no longer submitted."""
    started = False

    def change(query: dict[str, Any]) -> None:
        nonlocal started
        if query["state"] == "SUBMITTED":
            query.update(state="IN_PROGRESS", updated=iso_now())
            started = True

    query = emu.store.update("queries", query_id, change)
    return query if started else None


def run_query(emu: Emulator, query_id: str) -> None:
    """Run a submitted query on PostgreSQL (as the Query Service role, under the statement timeout) and
    record SUCCESS (row count), FAILED (errors; ``53400`` on timeout; ``58000`` without the role), or
    nothing when it was KILLED."""
    query = _start(emu, query_id)
    if query is None:
        return
    started = time.monotonic()
    sql = query["effectiveSQL"]
    try:
        with role_connection(emu, query_role(emu)) as conn:
            rows = _execute(emu, conn, query_id, sql)
            with emu.query_lock:  # a cancel either comes first (rolled back) or finds the query finished
                if _state(emu, query_id) == "KILLED":
                    raise _Killed
                conn.commit()
                sync_datasets(emu, sql, query_id)
                _finish(emu, query_id, "SUCCESS", rowCount=rows, elapsedTime=_ms_since(started))
    except _Killed:
        return
    except psycopg2.errors.QueryCanceled as exc:
        message = f"query exceeded the emulator's {emu.config.query_timeout_seconds} s execution limit ({exc})"
        error = {"code": _TIMEOUT_CODE, "message": message.strip(), "errorType": "USER_ERROR"}
        _finish(emu, query_id, "FAILED", errors=[error], elapsedTime=_ms_since(started))  # a KILLED query stays so
    except psycopg2.Error as exc:
        error = {"code": exc.pgcode or "58000", "message": str(exc).strip(), "errorType": "USER_ERROR"}
        _finish(emu, query_id, "FAILED", errors=[error], elapsedTime=_ms_since(started))


def _execute(emu: Emulator, conn: psycopg2.extensions.connection, query_id: str, sql: str) -> int:
    """Execute ``sql`` under the statement timeout, its backend registered for cancelling; its row count."""
    with conn.cursor() as cur:
        timeout_ms = str(emu.config.query_timeout_seconds * 1000)
        cur.execute("SELECT set_config('statement_timeout', %s, false), pg_backend_pid()", [timeout_ms])
        backend = int(cur.fetchone()[1])
        with emu.query_lock:
            emu.query_backends[query_id] = backend
        try:
            cur.execute(sql)
            return max(cur.rowcount, 0)
        finally:
            with emu.query_lock:
                emu.query_backends.pop(query_id, None)


def _state(emu: Emulator, query_id: str) -> str | None:
    """A query's current state."""
    query = emu.store.get("queries", query_id)
    return None if query is None else str(query["state"])


def _ms_since(started: float) -> int:
    """Milliseconds since a monotonic start."""
    return int((time.monotonic() - started) * 1000)


def sync_datasets(emu: Emulator, sql: str, query_id: str) -> None:
    """Register tables created by CTAS as datasets, and forget datasets of dropped tables."""
    try:
        statements = sqlglot.parse(sql, read="postgres")
    except sqlglot.errors.ParseError:
        return
    for statement in statements:
        if not isinstance(statement, exp.Create | exp.Drop) or str(statement.args.get("kind", "")).upper() != "TABLE":
            continue
        table = statement.find(exp.Table)
        if table is None:
            continue
        name = table.name
        existing = [d for d in emu.store.all("datasets") if table_of(d) == name]
        if isinstance(statement, exp.Drop):
            for dataset in existing:
                emu.store.delete("datasets", dataset["id"])
        elif not existing:
            body = {"name": name, "description": f"created by query {query_id}", "tags": {PQS_TAG: [name]}}
            new_dataset(emu, body, name)


def resume_queries(emu: Emulator) -> None:
    """Run again the queries a previous run left unfinished (each runs in one transaction)."""
    for query in emu.store.all("queries"):
        if query["state"] == "IN_PROGRESS":  # its statement's transaction died with the previous run
            emu.store.update("queries", query["id"], lambda q: q.update(state="SUBMITTED"))
        if query["state"] not in _FINAL:
            submit_query(emu, query["id"])
