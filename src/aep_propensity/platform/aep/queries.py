"""Query Service (``/data/foundation/query``): interactive SQL over its PostgreSQL wire protocol, and
statements (CTAS, views, drops) through its queries API.

- Interactive SQL goes over psycopg2 with the connection parameters of ``GET
  /query/connection_parameters`` (``sslmode`` from config). Their password is the access token, so
  they are fetched once per token and kept while the client's token is: renewed with it, and fetched
  again (on a renewed token) when the Query Service refuses a connection for authentication.
- AEP may cut an interactive result at its row limit (50,000) rather than fail, so a result of that
  many rows is an overflow error; an SQL error is an :class:`~.client.AEPError` with the Query
  Service's SQLSTATE and message. :meth:`QueryService.read_batches` reads interactively what stays
  under that limit and anything else through a dataset export (CTAS into a scratch table, exported,
  read, dropped).
- ``create_table_as``/``create_view``: ``DROP TABLE`` then ``CREATE TABLE ... AS``, or ``CREATE OR
  REPLACE VIEW``, through the queries API (``POST /queries``, polled to ``SUCCESS``). SQL is
  transpiled from the canonical dialect to the Query Service's (``spark`` on AEP).

Adobe's references: the Query Service API
(https://developer.adobe.com/experience-platform-apis/references/query-service/), connecting clients
and its credentials (https://experienceleague.adobe.com/en/docs/experience-platform/query/ui/credentials)
and its guardrails (https://experienceleague.adobe.com/en/docs/experience-platform/query/guardrails).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.port import INTERACTIVE_ROW_LIMIT, PlatformError, TableHandle, check_name
from ..core.sql import identifier, transpile
from .client import AEPClient, AEPError
from .contract import QUERY, QUERY_DONE
from .exports import DatasetExport

logger = logging.getLogger(__name__)

#: SQLSTATEs of a connection refused for its credential (invalid_authorization_specification, invalid_password).
AUTH_REFUSED = {"28000", "28P01"}


class QueryService:
    """Interactive queries and handles over psycopg2; CTAS, views and drops through the queries API."""

    def __init__(
        self,
        client: AEPClient,
        exports: DatasetExport,
        dialect: str = "spark",
        sslmode: str = "require",
        interactive_row_limit: int = INTERACTIVE_ROW_LIMIT,
    ) -> None:
        self.client = client
        self.exports = exports
        self.dialect = dialect
        self.sslmode = sslmode
        self.interactive_row_limit = interactive_row_limit
        self._parameters: tuple[str, dict[str, Any]] | None = None  # (the token they came with, the parameters)

    # -- connections ----------------------------------------------------------------------------

    def connection_parameters(self) -> dict[str, Any]:
        """The Query Service's connection parameters, fetched once per access token of the client."""
        token = self.client.token()
        if self._parameters is None or self._parameters[0] != token:
            self._parameters = (token, self.client.get(f"{QUERY}/connection_parameters"))
        return self._parameters[1]

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A psycopg2 connection to Query Service; a connection refused for authentication renews the
        token and the connection parameters, then is tried once more."""
        params = self.connection_parameters()
        try:
            conn = self._open(params)
        except _AuthRefused:
            logger.info("Query Service refused the connection for authentication; renewing the token once")
            self._parameters = None
            self.client.renew_token()
            params = self.connection_parameters()
            try:
                conn = self._open(params)
            except _AuthRefused as exc:
                raise AEPError(str(exc)) from None
        try:
            yield conn
        finally:
            conn.close()

    def _open(self, params: dict[str, Any]) -> Any:
        """Open a connection with ``params``; a refusal for authentication is :class:`_AuthRefused`."""
        where = f"{params['host']}:{params['port']}"
        try:
            return psycopg2.connect(
                host=params["host"],
                port=params["port"],
                dbname=params["dbName"],
                user=params["username"],
                password=params["token"],
                sslmode=self.sslmode,
                connect_timeout=int(self.client.timeout_seconds),
            )
        except psycopg2.OperationalError as exc:
            message = f"connecting to Query Service at {where} failed: {exc}"
            if getattr(exc, "pgcode", None) in AUTH_REFUSED or "authentication" in str(exc).lower():
                raise _AuthRefused(message) from None
            raise AEPError(message) from None

    # -- interactive ----------------------------------------------------------------------------

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query (canonical dialect); a result of ``interactive_row_limit`` rows or more
        is an overflow error, as AEP may cut a result there instead of failing."""
        limit = self.interactive_row_limit
        with self.connect() as conn, conn.cursor() as cur:
            execute(cur, transpile(sql, self.dialect))
            try:
                rows = cur.fetchmany(limit)
            except psycopg2.Error as exc:
                raise query_error(exc) from None
            columns = [d.name for d in cur.description]
        if len(rows) >= limit:
            raise PlatformError(
                f"interactive query reached the interactive row limit of {limit:,}; read bulk data through export"
            )
        return pd.DataFrame(rows, columns=columns)

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stream the rows of a canonical-dialect query: interactively when they fit the interactive row
        limit, else through a dataset export (CTAS into a scratch table, exported, read, dropped), since
        AEP caps interactive results and bulk data never travels that way."""
        count = self.query(count_sql(sql))
        if int(count.iloc[0, 0]) < self.interactive_row_limit:  # as query(): the limit itself is an overflow
            yield from pa.Table.from_pandas(self.query(sql), preserve_index=False).to_batches(batch_rows)
            return
        scratch = f"_read_{uuid.uuid4().hex[:16]}"
        self.create_table_as(scratch, sql)
        try:
            with tempfile.TemporaryDirectory() as folder:
                record = self.exports.export(scratch, folder)
                fs, path = fsspec.core.url_to_fs(record.path)
                for part in sorted(fs.ls(path, detail=False)):
                    yield from pq.ParquetFile(part, filesystem=fs).iter_batches(batch_rows)
        finally:
            self._drop_table(scratch)

    def columns(self, table: str) -> tuple[str, ...] | None:
        """The columns of ``table``, or None when it does not exist."""
        check_name(table)
        with self.connect() as conn, conn.cursor() as cur:
            try:
                cur.execute(probe_sql(table, self.dialect))
            except psycopg2.errors.UndefinedTable:
                return None
            except psycopg2.Error as exc:
                raise query_error(exc) from None
            return tuple(d.name for d in cur.description)

    def exists(self, table: str) -> bool:
        """Whether ``table`` (a dataset's table or a view) exists."""
        return self.columns(table) is not None

    def handle(self, table: str) -> TableHandle:
        """A handle (name, columns, row count) on an existing table or view."""
        columns = self.columns(table)
        if columns is None:
            raise PlatformError(f"table {table!r} does not exist on the platform: run the pipeline that makes it first")
        count = self.query(f"SELECT count(*) AS n FROM {identifier(table)}")
        return TableHandle(table, columns, int(count.iloc[0, 0]))

    # -- the queries API ------------------------------------------------------------------------

    def run_query(self, sql: str, name: str) -> dict[str, Any]:
        """Run ``sql`` (already in the Query Service's dialect) through the queries API and wait for it."""
        dbname = self.connection_parameters()["dbName"]
        body = {"dbName": dbname, "sql": sql, "name": name, "description": "aep-propensity"}
        query_id = self.client.post(f"{QUERY}/queries", body)["id"]
        done = self.client.poll(
            lambda: self.client.get(f"{QUERY}/queries/{query_id}"),
            lambda answer: answer.get("state") in QUERY_DONE,
            f"query {name} ({query_id})",
        )
        if done["state"] != "SUCCESS":
            errors = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in done.get("errors", []))
            raise AEPError(f"query {name} ({query_id}) {done['state']}: {errors or 'no error given'}")
        return done

    def create_table_as(self, name: str, sql: str) -> TableHandle:
        """Materialise ``sql`` as the table (and dataset) ``name`` by CTAS through the queries API."""
        self._drop_table(name)
        self.run_query(ctas_sql(name, sql, self.dialect), f"ctas {name}")
        logger.info("Created table %s by CTAS", name)
        return self.handle(name)

    def create_view(self, name: str, sql: str) -> TableHandle:
        """Define ``name`` as a view of ``sql`` by ``CREATE OR REPLACE VIEW`` (as the flat views are)."""
        self.run_query(view_sql(name, sql, self.dialect), f"view {name}")
        logger.info("Defined view %s", name)
        return self.handle(name)

    def _drop_table(self, name: str) -> None:
        """``DROP TABLE IF EXISTS`` through the queries API."""
        self.run_query(drop_table_sql(name, self.dialect), f"drop {name}")


def count_sql(sql: str) -> str:
    """``SELECT count(*) AS n FROM (<sql>) AS counted`` (canonical dialect): how
    :meth:`QueryService.read_batches` decides between an interactive read and an export."""
    return f"SELECT count(*) AS n FROM ({sql}) AS counted"


def probe_sql(table: str, dialect: str) -> str:
    """``SELECT * FROM <table> LIMIT 0`` in ``dialect``: how :meth:`QueryService.columns` asks for a table's
    columns (in the Query Service's dialect like every statement: Spark SQL reads ``"profiles"`` as a string)."""
    return transpile(f"SELECT * FROM {identifier(check_name(table))} LIMIT 0", dialect)


def ctas_sql(name: str, sql: str, dialect: str) -> str:
    """``CREATE TABLE <name> AS <sql>`` for canonical-dialect ``sql``, in ``dialect``: what
    :meth:`QueryService.create_table_as` sends through the queries API (after :func:`drop_table_sql`)."""
    return transpile(f"CREATE TABLE {identifier(check_name(name))} AS {sql}", dialect)


def view_sql(name: str, sql: str, dialect: str) -> str:
    """``CREATE OR REPLACE VIEW <name> AS <sql>`` for canonical-dialect ``sql``, in ``dialect``: what
    :meth:`QueryService.create_view` sends through the queries API."""
    return transpile(f"CREATE OR REPLACE VIEW {identifier(check_name(name))} AS {sql}", dialect)


def drop_table_sql(name: str, dialect: str) -> str:
    """``DROP TABLE IF EXISTS <name>`` in ``dialect``, as the queries API receives it before a CTAS."""
    return transpile(f"DROP TABLE IF EXISTS {identifier(check_name(name))}", dialect)


class _AuthRefused(AEPError):
    """The Query Service refused a connection for its credential."""


def query_error(exc: psycopg2.Error) -> AEPError:
    """An :class:`AEPError` with the Query Service's SQLSTATE and message (never the SQL or a credential)."""
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc) or type(exc).__name__).strip()
    code = getattr(exc, "pgcode", None)
    return AEPError(f"Query Service error{f' {code}' if code else ''}: {message}", code=code)


def execute(cursor: Any, sql: str) -> None:
    """Execute one interactive statement; an SQL error becomes an :class:`AEPError`."""
    try:
        cursor.execute(sql)
    except psycopg2.Error as exc:
        raise query_error(exc) from None
