"""Query Service (``/data/foundation/query``): connection parameters and the asynchronous queries API.

The emulator's PostgreSQL is its Query Service: connection parameters point at it (with the non-AEP
key ``searchPath`` naming the emulator's schema), and queries run there in a background thread in
PostgreSQL's dialect. A ``CREATE TABLE ... AS`` registers its table as a dataset (with the
``adobe/pqs/table`` tag, so it can be exported); ``DROP TABLE`` removes the dataset of that table.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg2
import psycopg2.extensions
import sqlglot
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlglot import exp

from aep_propensity.platform.port import check_name
from aep_propensity.platform.sql import identifier

from .catalog import PQS_TAG, new_dataset, table_of
from .errors import bad_request, not_found
from .service import Emulator, EmulatorDep, JsonObject, iso_now

router = APIRouter(prefix="/data/foundation/query")

_INVALID = "QS-1400-400"
_NOT_FOUND = "QS-1404-404"
_FINAL = ("SUCCESS", "FAILED", "KILLED", "TIMEOUT")


def bearer_token(request: Request) -> str:
    """The caller's access token (already checked by the header middleware)."""
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


@router.get("/connection_parameters")
def connection_parameters(request: Request, emu: EmulatorDep) -> dict[str, Any]:
    """Where the Query Service listens: the emulator's PostgreSQL (trust auth ignores the token)."""
    dsn = psycopg2.extensions.parse_dsn(emu.config.dsn)
    token = bearer_token(request)
    return {
        "username": dsn.get("user", "postgres"),
        "dbName": dsn.get("dbname", "postgres"),
        "host": dsn.get("host", "127.0.0.1"),
        "port": int(dsn.get("port", 5432)),
        "version": 1,
        "token": token,
        "compressedToken": token,
        "websocketHost": f"{emu.config.host}:{emu.config.port}",
        "searchPath": emu.config.schema,
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
    if not body.get("sql") or not body.get("dbName"):
        raise bad_request("a query needs dbName and sql", "QS", _INVALID)
    try:
        sql = _statement_sql(body)
    except ValueError as exc:
        raise bad_request(str(exc), "QS", _INVALID) from None
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
    emu.submit(run_query, emu, query_id)
    return query


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
    query = emu.store.get("queries", query_id)
    if query is None:
        raise not_found("query", query_id, "QS", _NOT_FOUND)
    return query


@router.patch("/queries/{query_id}", status_code=202)
def patch_query(query_id: str, body: JsonObject, emu: EmulatorDep) -> JSONResponse:
    """``{"op": "cancel"}`` marks an unfinished query KILLED; ``soft_delete`` hides nothing here."""
    get_query(query_id, emu)
    if body.get("op") not in ("cancel", "soft_delete"):
        raise bad_request("op must be cancel or soft_delete", "QS", _INVALID)
    if body["op"] == "cancel":
        _finish(emu, query_id, "KILLED")
        return JSONResponse({"message": "Query cancel request received", "statusCode": 202}, status_code=202)
    return JSONResponse({"message": "Query soft delete request received", "statusCode": 202}, status_code=202)


def _finish(emu: Emulator, query_id: str, state: str, **fields: Any) -> None:
    """Move an unfinished query to ``state`` (a finished one keeps its state)."""

    def change(query: dict[str, Any]) -> None:
        if query["state"] not in _FINAL:
            query.update(fields, state=state, updated=iso_now())

    emu.store.update("queries", query_id, change)


def run_query(emu: Emulator, query_id: str) -> None:
    """Run a submitted query on PostgreSQL and record SUCCESS (row count) or FAILED (errors)."""
    query = emu.store.get("queries", query_id)
    if query is None or query["state"] in _FINAL:
        return
    emu.store.update("queries", query_id, lambda q: q.update(state="IN_PROGRESS", updated=iso_now()))
    started = time.monotonic()
    sql = query["effectiveSQL"]
    try:
        with emu.engine.connect() as conn, conn.cursor() as cur:
            cur.execute(sql)
            rows = max(cur.rowcount, 0)
    except psycopg2.Error as exc:
        error = {"code": exc.pgcode or "58000", "message": str(exc).strip(), "errorType": "USER_ERROR"}
        _finish(emu, query_id, "FAILED", errors=[error], elapsedTime=_ms_since(started))
        return
    sync_datasets(emu, sql, query_id)
    _finish(emu, query_id, "SUCCESS", rowCount=rows, elapsedTime=_ms_since(started))


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
        if query["state"] not in _FINAL:
            emu.submit(run_query, emu, query["id"])
