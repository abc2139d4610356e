"""The emulator's running state: configuration, store, local platform, faults and background work;
the PostgreSQL role Query Service SQL runs as; and the small helpers every router shares (sandbox,
``property==`` filters, JSON Patch)."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any

import jsonpatch
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from fastapi import Body, Depends, Request
from pydantic import AfterValidator

from aep_propensity.platform.core.ledger import LEDGER_DDL, Ledger
from aep_propensity.platform.core.port import check_name
from aep_propensity.platform.core.sql import identifier
from aep_propensity.platform.local import LocalPlatform, PostgresEngine

from .config import EmulatorConfig, check_faults
from .errors import bad_request
from .store import Store

logger = logging.getLogger(__name__)


def now_ms() -> int:
    """The current time in epoch milliseconds, as Catalog reports times."""
    return int(time.time() * 1000)


def iso_now() -> str:
    """The current UTC time as ISO-8601 with milliseconds and ``Z``, as Query Service reports times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


class Emulator:
    """What every route and background job shares."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store(config.dsn, config.state_schema, legacy_schema=config.schema)
        self.engine = PostgresEngine(config.dsn, schema=config.schema)
        self.platform = LocalPlatform(self.engine)
        self.faults: dict[str, Any] = dict(config.faults)
        self._calls = 0
        self.injected = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="emulator-job")
        #: Set by :meth:`close`: background waits (the batch delay fault) end early.
        self.stopping = threading.Event()
        #: Query id -> PostgreSQL backend pid of the queries running now (see :mod:`.queries`).
        self.query_backends: dict[str, int] = {}
        self.query_lock = threading.Lock()
        #: The role Query Service SQL runs as; None when the DSN's user cannot create it (no SQL then runs).
        self.query_role = setup_query_role(config.dsn, config.schema, self.engine)
        #: The port of Query Service's PostgreSQL wire (:mod:`.wire`), set once its relay listens.
        self.wire_port = 0
        config.dlz_root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Emulator({self.config!r})"

    def close(self) -> None:
        """Wait for the background jobs that are running (queued ones are dropped: batches and queries
        resume at the next start, other jobs are marked FAILED then), then close the store."""
        self.stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def submit(self, job: Callable[..., None], *args: Any, on_crash: Callable[[str], None] | None = None) -> Future:
        """Run ``job(*args)`` in a background thread. If it dies unexpectedly the failure is logged and
        ``on_crash(message)`` marks its record failed, so that nobody polls it forever."""

        def run() -> None:
            try:
                job(*args)
            except BaseException as exc:
                logger.exception("background job %s failed", getattr(job, "__name__", job))
                if on_crash is not None:
                    _record_crash(on_crash, f"the emulator's background job failed: {type(exc).__name__}: {exc}")

        return self._executor.submit(run)

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the emulator is stopping; whether it is still running."""
        return not self.stopping.wait(seconds)

    def set_faults(self, faults: Any) -> dict[str, Any]:
        """Replace the fault switches (and restart the call counter)."""
        checked = check_faults(faults)
        with self._lock:
            self.faults = checked
            self._calls = self.injected = 0
        return checked

    def count_call(self) -> int:
        """Count one platform call; returns its number since the faults were last set."""
        with self._lock:
            self._calls += 1
            return self._calls

    def count_injected(self) -> None:
        """Count one injected 429 or 500."""
        with self._lock:
            self.injected += 1

    @property
    def token_ttl(self) -> int:
        """Lifetime of new tokens in seconds (the ``token_ttl`` fault overrides the option)."""
        return int(self.faults.get("token_ttl", self.config.token_ttl))


#: Tables of the local platform in the data schema (its ledger, batch staging tables and audience
#: members): never the Query Service role's, whatever their default privileges gave it.
PLATFORM_TABLES = r"^(ledger_|_batch_|audience_membership$)"
_DML = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"


@dataclass(frozen=True)
class QueryRole:
    """The PostgreSQL role of one emulator's Query Service (``<schema>_query``): it logs in, uses and
    creates in the data schema (its default search path), reads and writes the tables the emulator
    makes there, and has no other privilege: no state schema, no server files, no other schema."""

    name: str
    password: str = field(repr=False)

    def dsn(self, dsn: str) -> str:
        """``dsn`` with this role's credentials instead of the emulator's."""
        return psycopg2.extensions.make_dsn(dsn, user=self.name, password=self.password)


def query_role_name(schema: str) -> str:
    """The Query Service role of the emulator on ``schema`` (roles are cluster-wide, so named per schema)."""
    return check_name(f"{schema}_query", "Query Service role (the schema name plus '_query')")


def can_create_roles(cur: psycopg2.extensions.cursor) -> bool:
    """Whether the connected user may create and alter roles (CREATEROLE or superuser)."""
    cur.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    row = cur.fetchone()
    return bool(row and row[0])


def setup_query_role(dsn: str, schema: str, engine: PostgresEngine) -> QueryRole | None:
    """Create (or reset) the Query Service role of ``schema`` with a fresh random password, after the
    local platform's ledger exists so that it can be kept from the role; None (logged as an error)
    when the DSN's user cannot create roles, so that user SQL never runs as that user."""
    name = query_role_name(schema)
    with engine.connect() as conn:  # creates the data schema and the ledger tables, owned by the emulator
        Ledger(engine).ensure(conn, LEDGER_DDL)
        with conn.cursor() as cur:
            if not can_create_roles(cur):
                logger.error(
                    "the PostgreSQL user of the DSN cannot create roles (it needs CREATEROLE): Query Service "
                    "refuses user SQL rather than run it with the emulator's own privileges"
                )
                return None
            role = QueryRole(name, secrets.token_urlsafe(24))
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                f"{verb} ROLE {identifier(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS NOINHERIT PASSWORD %s",
                [role.password],
            )
            grant_query_role(cur, schema, name)
    return role


def grant_query_role(cur: psycopg2.extensions.cursor, schema: str, role: str) -> None:
    """The role's privileges: the data schema as its search path, with read and write on the tables the
    emulator makes there (now and later), then :func:`revoke_platform_tables`."""
    quoted, data = identifier(role), identifier(schema)
    cur.execute(f"ALTER ROLE {quoted} SET search_path TO {data}")
    cur.execute(f"GRANT USAGE, CREATE ON SCHEMA {data} TO {quoted}")
    cur.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {data} GRANT {_DML} ON TABLES TO {quoted}")
    cur.execute(f"GRANT {_DML} ON ALL TABLES IN SCHEMA {data} TO {quoted}")
    revoke_platform_tables(cur, schema, role)


def revoke_platform_tables(cur: psycopg2.extensions.cursor, schema: str, role: str) -> None:
    """Take from the role every privilege on the local platform's tables (:data:`PLATFORM_TABLES`), which
    the schema's default privileges gave it when they were made. Callers take turns (an advisory lock:
    concurrent REVOKEs of one table fail), only tables the role has a privilege on are touched, and a
    staging table dropped meanwhile is skipped."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"revoke {role}"])
    cur.execute(
        "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname ~ %s AND pg_get_userbyid(c.relowner) <> %s "
        "AND has_table_privilege(%s, c.oid, %s)",
        [schema, PLATFORM_TABLES, role, role, _DML],
    )
    for (table,) in cur.fetchall():
        cur.execute("SAVEPOINT revoke_table")
        try:
            cur.execute(f"REVOKE ALL ON {identifier(schema)}.{identifier(table)} FROM {identifier(role)}")
        except psycopg2.errors.UndefinedTable:
            cur.execute("ROLLBACK TO SAVEPOINT revoke_table")
        else:
            cur.execute("RELEASE SAVEPOINT revoke_table")


def _record_crash(on_crash: Callable[[str], None], message: str) -> None:
    """Call a job's crash handler; its own failure is only logged."""
    try:
        on_crash(message)
    except Exception:
        logger.exception("could not mark a crashed background job failed")


def get_emulator(request: Request) -> Emulator:
    """The emulator behind the app (a FastAPI dependency)."""
    return request.app.state.emulator


def sandbox_of(request: Request) -> str:
    """The sandbox named by the request's ``x-sandbox-name`` header (``prod`` when absent)."""
    return getattr(request.state, "sandbox", "prod")


def matches_property(item: dict[str, Any], prop: str | None) -> bool:
    """Whether an object satisfies an AEP ``property=key==value`` list filter (no filter: always)."""
    if not prop:
        return True
    key, _, value = prop.partition("==")
    return str(item.get(key)) == value


def offset_page(items: list[Any], start: int, limit: int, service: str, code: str) -> tuple[list[Any], int | None]:
    """The items of one page (``limit`` from the zero-based offset ``start``) and the offset of the
    next page (None on the last); a ``limit`` under 1 or a negative ``start`` is a 400."""
    if limit < 1:
        raise bad_request("limit must be at least 1", service, code)
    if start < 0:
        raise bad_request("start must be zero or more", service, code)
    following = start + limit
    return items[start:following], following if following < len(items) else None


def apply_json_patch(document: dict[str, Any], operations: Any, service: str, code: str) -> dict[str, Any]:
    """A patched copy of ``document`` (RFC 6902, by the ``jsonpatch`` package); a patch that is not an
    array of valid operations, or cannot apply, is a 400 problem document of ``service``."""
    if not isinstance(operations, list):
        raise bad_request("a JSON Patch (RFC 6902) is an array of operations", service, code)
    try:
        patched = jsonpatch.apply_patch(document, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise bad_request(f"invalid JSON Patch: {exc}", service, code) from None
    if not isinstance(patched, dict):
        raise bad_request("a JSON Patch must leave an object", service, code)
    return patched


def texts_of(value: Any) -> Iterator[str]:
    """Every string of a JSON value: its objects' keys and its strings, however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from texts_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts_of(item)


def storable(value: Any) -> Any:
    """``value`` if every string of it can be stored (PostgreSQL's JSONB holds no NUL character and no
    lone surrogate); else the ValueError that answers the request with a 400."""
    for text in texts_of(value):
        if "\x00" in text:
            raise ValueError("text holds a NUL character (\\u0000), which cannot be stored")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text holds a lone UTF-16 surrogate, which is not Unicode text") from None
    return value


#: Route parameter types: the emulator, and a JSON body (object or any JSON value) whose text can be stored.
EmulatorDep = Annotated[Emulator, Depends(get_emulator)]
JsonObject = Annotated[dict[str, Any], Body(), AfterValidator(storable)]
JsonBody = Annotated[Any, Body(), AfterValidator(storable)]
