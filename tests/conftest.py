"""Shared fixtures: the platform on both engines, PostgreSQL for real."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from aep_propensity.platform import make_platform
from aep_propensity.platform.local import LocalPlatform

PG_DSN = os.environ.get("AEP_PROPENSITY_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_available() -> bool:
    """Whether the PostgreSQL server answers."""
    try:
        psycopg2.connect(PG_DSN, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


#: How to install the optional packages some tests drive (.ci/run installs both).
AEPP_INSTALL = "pip install --no-deps aepp==0.6.0"
MLFLOW_INSTALL = "pip install -e '.[mlflow]'"


def require_module(module: str, install: str) -> None:
    """Skip loudly without an optional package (``install`` says how to get it); in CI (CI=true) its
    absence is a failure: .ci/run installs every optional package the tests use."""
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed ({install})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run these tests")
    warnings.warn(message + ": skipping its tests", stacklevel=2)
    pytest.skip(message)


def require_postgres() -> None:
    """Skip loudly without PostgreSQL; in CI (CI=true) its absence is a failure."""
    if postgres_available():
        return
    message = f"PostgreSQL is not reachable at {PG_DSN}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the PostgreSQL tests)")
    warnings.warn(message + ": skipping PostgreSQL tests", stacklevel=2)
    pytest.skip(message)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    require_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


def platform_config(engine: str, tmp_path, schema: str | None = None) -> tuple[dict, dict | None]:
    """The catalog's platform block and credentials for ``engine``."""
    if engine == "duckdb":
        return {
            "backend": "duckdb",
            "path": str(tmp_path / "platform.duckdb"),
            "memory_limit": "2GB",
            "threads": 2,
        }, None
    return {"backend": "postgres", "schema": schema}, {"dsn": PG_DSN}


@pytest.fixture(params=["duckdb", "postgres"])
def engine_name(request) -> str:
    """Each engine in turn."""
    return request.param


@pytest.fixture
def platform(engine_name, tmp_path, request) -> LocalPlatform:
    """The local platform on each engine in turn."""
    schema = request.getfixturevalue("pg_schema") if engine_name == "postgres" else None
    config, credentials = platform_config(engine_name, tmp_path, schema)
    return make_platform(config, credentials)


PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def kedro_session(tmp_path: Path):
    """A factory of KedroSessions in the test environment whose data all lands under ``tmp_path``.

    conf/ is copied and the test environment's ``data_root`` set to an absolute temporary path, so
    runs never touch the repository's data/ folder.
    """
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    globals_file = conf / "test" / "globals.yml"
    text = globals_file.read_text().replace("data_root: data/test", f"data_root: {tmp_path / 'data'}")
    globals_file.write_text(text)
    bootstrap_project(PROJECT)

    def create(**kwargs) -> KedroSession:
        return KedroSession.create(project_path=PROJECT, env="test", conf_source=str(conf), **kwargs)

    return create


@contextmanager
def loopback_receiver(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server of ``handler`` on a free loopback port, in a thread; yields its ``/audiences`` URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/audiences"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory):
    """One local Spark session for the test process, with the platform's session settings; tests that
    change SQL settings or register views take ``spark_session.newSession()`` (same JVM, own state)."""
    require_module("pyspark", "pip install -e '.[spark]'")
    from aep_propensity.platform.config import SparkConfig  # noqa: PLC0415 - with the optional extra only
    from aep_propensity.platform.spark.session import spark_session as make_session  # noqa: PLC0415

    config = SparkConfig(backend="spark", path=str(tmp_path_factory.mktemp("spark")), master="local[2]")
    session = make_session(config)
    yield session
    session.stop()
