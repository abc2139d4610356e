"""Where the spark backend's SparkSession comes from: local mode, Spark Connect or Databricks Connect.

Every session gets the settings the platform's SQL relies on (:data:`SESSION_CONF`): UTC as the
session time zone (the platform stores UTC timestamps without a zone, as AEP does) and Arrow for
every transfer between Python and the JVM.

``config.session`` chooses the mode:

* ``local``: a JVM in this process (``config.master``; needs Java 17+). Every setting applies,
  static ones (``spark.driver.memory``, ``spark.ui.enabled``) included, if this call starts the JVM.
* ``connect``: a Spark Connect server at ``config.remote`` (``sc://host:port``, from SPARK_REMOTE
  or ``platform.remote``). Only runtime SQL settings can be set on a Connect session (through
  ``spark.conf.set``): :data:`SESSION_CONF` (but for :data:`CLASSIC_ONLY_CONF`),
  ``spark.sql.shuffle.partitions`` and ``config.spark_conf``. ``driver_memory`` and other static
  settings belong to the server's own start-up; a static key in ``spark_conf`` is an error naming it.
* ``databricks``: Databricks Connect (the ``databricks`` extra, in its own virtual environment),
  configured by its own environment variables or profile; settings as for ``connect``.

A remote session that cannot be had raises :class:`PlatformError` saying what was asked, what
failed and what to do; it never falls back to local mode. Reaching the server is bounded in time
(:data:`CONNECT_TIMEOUT_SECONDS`): Spark Connect's own retry policy would otherwise retry an
unreachable server for more than ten minutes. Secrets in a connection string (``;token=...``) are
masked in every message and log line.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..core.port import PlatformError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SessionSettings(Protocol):
    """What a session needs of the backend's configuration (``aep_propensity.platform.config.SparkConfig``,
    not imported: the configuration sits above the backends)."""

    session: str
    master: str
    remote: str | None
    driver_memory: str
    shuffle_partitions: int
    spark_conf: dict[str, str]


logger = logging.getLogger(__name__)

#: Settings every session of the platform gets, whichever way it is made.
SESSION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
}

#: Settings of :data:`SESSION_CONF` that only classic PySpark reads (Spark Connect has no non-Arrow path).
CLASSIC_ONLY_CONF: frozenset[str] = frozenset({"spark.sql.execution.arrow.pyspark.fallback.enabled"})

#: How long reaching a Spark Connect server may take before the session fails (seconds).
CONNECT_TIMEOUT_SECONDS = 10.0
#: Spark Connect's default port, when the ``sc://`` URL names none.
CONNECT_DEFAULT_PORT = 15002

#: What PySpark's Spark Connect client imports (module: the package that provides it). Without one of
#: them PySpark may end the process with exit status 0 (``sys.exit(0)`` in its dependency check).
CONNECT_DEPENDENCIES: dict[str, str] = {
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "grpc": "grpcio",
    "grpc_status": "grpcio-status",
    "google.rpc.error_details_pb2": "googleapis-common-protos",
    "zstandard": "zstandard",
}

SPARK_INSTALL = "pip install -e '.[spark]'"
DATABRICKS_INSTALL = "pip install -e . && pip install -e '.[databricks]'"

#: Environment variables that make PySpark's builder open a Spark Connect session instead of a local one.
_CONNECT_ENVIRONMENT = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")
_SECRET_PARAMETER = re.compile(r"(?i)((?:[a-z_]*token|password|secret)=)[^;&\s'\"]+")
_USERINFO = re.compile(r"(sc://)[^/@\s]+@")
_DATABRICKS_TOKEN = re.compile(r"dapi[0-9a-f]{16,}")
_LOCK = threading.Lock()


def spark_session(config: SessionSettings) -> SparkSession:
    """The session ``config.session`` asks for, with :data:`SESSION_CONF` and ``config.spark_conf``.

    Raises :class:`PlatformError` when the session cannot be had (never a silent local fallback).
    """
    if config.session == "local":
        return _local_session(config)
    if config.session == "connect":
        return _connect_session(config)
    if config.session == "databricks":
        return _databricks_session(config)
    raise PlatformError(f"unknown platform.session {config.session!r}: choose local, connect or databricks")


def runtime_conf(config: SessionSettings, remote: bool = False) -> dict[str, str]:
    """The settings a running session takes (``spark.conf.set``): :data:`SESSION_CONF`, the shuffle
    partitions and ``config.spark_conf`` (which wins).

    A ``remote`` (Connect) session leaves out :data:`CLASSIC_ONLY_CONF` (unless ``spark_conf`` names it):
    its client always transfers data through Arrow, and its server warns that the setting is not
    supported.
    """
    session_conf = {key: value for key, value in SESSION_CONF.items() if not (remote and key in CLASSIC_ONLY_CONF)}
    return {
        **session_conf,
        "spark.sql.shuffle.partitions": str(config.shuffle_partitions),
        **config.spark_conf,
    }


def mask_secrets(text: str) -> str:
    """``text`` with the secrets a connection string or Databricks may carry replaced by ``***``."""
    text = _SECRET_PARAMETER.sub(r"\1***", text)
    text = _USERINFO.sub(r"\1***@", text)
    text = _DATABRICKS_TOKEN.sub("***", text)
    for variable in ("DATABRICKS_TOKEN", "SPARK_CONNECT_AUTHENTICATE_TOKEN"):
        value = os.environ.get(variable)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


# -- local mode ----------------------------------------------------------------------------------------


def _warehouse(path: str) -> str:
    """Spark's warehouse folder, under the platform's data root (the platform keeps no tables there)."""
    return f"{path.rstrip('/')}/warehouse" if "://" in path else os.path.join(os.path.abspath(path), "warehouse")


def _local_session(config: SessionSettings) -> SparkSession:
    """A session in local mode (``config.master``), static settings included."""
    set_variables = [name for name in _CONNECT_ENVIRONMENT if os.environ.get(name)]
    if set_variables:
        names = " and ".join(set_variables)
        raise PlatformError(
            f"platform.session is local, but {names} is set in the environment, which makes PySpark open a "
            f"Spark Connect session instead: unset {names} for local mode, or set platform.session: connect"
        )
    from pyspark.sql import SparkSession  # noqa: PLC0415 - only the spark backend needs PySpark

    builder = (
        SparkSession.builder.master(config.master)
        .appName("aep-propensity")
        .config("spark.api.mode", "classic")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # no progress bars in the run's log
        .config("spark.sql.warehouse.dir", _warehouse(config.path))  # not spark-warehouse/ in the cwd
        .config("spark.driver.memory", config.driver_memory)
    )
    for key, value in runtime_conf(config).items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:
        raise PlatformError(
            f"could not start a local Spark session (master {config.master}): {mask_secrets(_first_line(exc))}; "
            "local mode "
            "needs Java 17 or later (java on PATH or JAVA_HOME) and PySpark 4 "
            f"({SPARK_INSTALL})"
        ) from None


# -- Spark Connect -------------------------------------------------------------------------------------


def _connect_session(config: SessionSettings) -> SparkSession:
    """A Spark Connect session at ``config.remote``, reached in bounded time."""
    if not config.remote:
        raise PlatformError(
            "platform.session is connect, but no Spark Connect server is named: set SPARK_REMOTE "
            "(sc://host:port) or platform.remote"
        )
    remote = config.remote
    shown = mask_secrets(remote)
    host, port = _connect_endpoint(remote)
    require_connect_dependencies()
    try:
        from pyspark.sql.connect.client import DefaultChannelBuilder  # noqa: PLC0415
        from pyspark.sql.connect.client.retries import DefaultPolicy  # noqa: PLC0415
        from pyspark.sql.connect.session import SparkSession as ConnectSession  # noqa: PLC0415
    except (ImportError, SystemExit) as exc:
        raise PlatformError(
            f"Spark Connect session at {shown} asked for, but PySpark's Connect client cannot be loaded "
            f"({_first_line(exc) or type(exc).__name__}): {SPARK_INSTALL}"
        ) from None

    _wait_until_reachable(remote, host, port, DefaultChannelBuilder)
    logger.info("Opening a Spark Connect session at %s", shown)
    try:
        session = ConnectSession.builder.remote(remote).create()
    except (Exception, SystemExit) as exc:
        raise PlatformError(
            f"could not open a Spark Connect session at {shown}: {mask_secrets(_first_line(exc))}; check "
            "SPARK_REMOTE or platform.remote"
        ) from None
    # The first calls run under a bounded retry policy (a few quick retries), then the default one
    # (resilient to a server restarting mid-run) comes back.
    client = session.client
    policies = client.get_retry_policies()
    client.set_retry_policies([DefaultPolicy(max_retries=3, initial_backoff=100, max_backoff=1000)])
    try:
        try:
            session.version  # noqa: B018 - one round trip: the server answers
        except (Exception, SystemExit) as exc:
            raise PlatformError(
                f"the Spark Connect server at {shown} does not answer: {mask_secrets(_first_line(exc))}; check "
                "that it is a running Spark Connect server (PySpark 4) and SPARK_REMOTE or platform.remote"
            ) from None
        _apply_runtime_conf(session, runtime_conf(config, remote=True), f"the Spark Connect session at {shown}")
    except PlatformError:
        _close_quietly(session)
        raise
    finally:
        client.set_retry_policies(policies)
    return session


def require_connect_dependencies() -> None:
    """Raise :class:`PlatformError` naming the packages Spark Connect's client needs and cannot import.

    Imported for real, not just looked up: a broken install fails here rather than in PySpark, which
    may end the process with exit status 0 instead of raising.
    """
    missing = []
    for module, package in CONNECT_DEPENDENCIES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise PlatformError(
            f"a Spark Connect session needs {', '.join(missing)}, which cannot be imported: install PySpark "
            f"with its connect extra ({SPARK_INSTALL}, which installs pyspark[connect])"
        )


def _connect_endpoint(remote: str) -> tuple[str, int]:
    """The host and port of an ``sc://host:port/;params`` URL (an error names the masked URL)."""
    shown = mask_secrets(remote)
    if not remote.startswith("sc://"):
        raise PlatformError(
            f"SPARK_REMOTE or platform.remote must be a Spark Connect URL (sc://host:port), not {shown!r}"
        )
    try:
        parsed = urllib.parse.urlparse("http" + remote[2:])
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host:
        raise PlatformError(f"the Spark Connect URL {shown!r} names no host (expected sc://host:port)")
    return host, port or CONNECT_DEFAULT_PORT


def _wait_until_reachable(remote: str, host: str, port: int, channel_builder: Any) -> None:
    """Raise :class:`PlatformError` unless a gRPC connection to the server is made within
    :data:`CONNECT_TIMEOUT_SECONDS` (a refused connection fails at once).

    The probe uses PySpark's own channel (TLS, token and gRPC proxy settings as the session's).
    """
    import grpc  # noqa: PLC0415 - present: require_connect_dependencies ran

    shown = mask_secrets(remote)
    channel = channel_builder(remote).toChannel()
    outcome: dict[str, str] = {}
    done = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            outcome.setdefault("state", state.name)
            done.set()

    channel.subscribe(watch, try_to_connect=True)
    try:
        done.wait(CONNECT_TIMEOUT_SECONDS)
    finally:
        channel.unsubscribe(watch)
        channel.close()
    if outcome.get("state") == "READY":
        return
    failure = (
        "the connection failed"
        if outcome.get("state") == "TRANSIENT_FAILURE"
        else f"no connection within {CONNECT_TIMEOUT_SECONDS:g} s"
    )
    raise PlatformError(
        f"a Spark Connect session at {shown} was asked for, but {failure} ({_diagnose(host, port)}): start the "
        "Spark Connect server or correct SPARK_REMOTE or platform.remote (no local session is started instead)"
    )


def _diagnose(host: str, port: int) -> str:
    """What a plain TCP connection to ``host:port`` says, for the error message."""
    try:
        with socket.create_connection((host, port), timeout=min(CONNECT_TIMEOUT_SECONDS, 3.0)):
            return (
                f"{host}:{port} accepts TCP connections, but no gRPC connection was made: not a Spark Connect "
                "server, or a TLS mismatch (use_ssl=true in the URL?)"
            )
    except ConnectionRefusedError:
        return f"nothing listens at {host}:{port}: connection refused"
    except TimeoutError:
        return f"{host}:{port} does not answer: connection timed out"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


# -- Databricks Connect --------------------------------------------------------------------------------


def _databricks_session(config: SessionSettings) -> SparkSession:
    """A Databricks Connect session (configured by Databricks' own environment variables or profile)."""
    try:
        from databricks.connect import DatabricksSession  # noqa: PLC0415 - the databricks extra, optional
    except ImportError:
        raise PlatformError(
            "platform.session is databricks, but Databricks Connect (databricks-connect) is not installed: "
            f"install the project's databricks extra in its own virtual environment ({DATABRICKS_INSTALL}); "
            "databricks-connect replaces pyspark, so it cannot share an environment with the spark extra"
        ) from None
    try:
        session = DatabricksSession.builder.getOrCreate()
        session.version  # noqa: B018 - one round trip: the cluster answers
    except (Exception, SystemExit) as exc:
        raise PlatformError(
            f"could not open a Databricks Connect session: {mask_secrets(_first_line(exc))}; set DATABRICKS_HOST "
            "with DATABRICKS_TOKEN and DATABRICKS_CLUSTER_ID (or DATABRICKS_SERVERLESS_COMPUTE_ID=auto), or "
            "DATABRICKS_CONFIG_PROFILE naming a profile of ~/.databrickscfg"
        ) from None
    _apply_runtime_conf(session, runtime_conf(config, remote=True), "the Databricks Connect session")
    return session


# -- shared --------------------------------------------------------------------------------------------


def _apply_runtime_conf(session: Any, conf: Mapping[str, str], where: str) -> None:
    """``spark.conf.set`` each setting on a remote session; one it refuses is an error naming it."""
    with _LOCK:
        for key, value in conf.items():
            try:
                session.conf.set(key, value)
            except Exception as exc:
                message = mask_secrets(_first_line(exc))
                hint = (
                    "static settings (such as spark.driver.memory) apply to local mode only: set them on the "
                    "server, or remove them from platform.spark_conf"
                    if "CANNOT_MODIFY_CONFIG" in message or "static" in message.lower()
                    else "correct or remove it in platform.spark_conf"
                )
                raise PlatformError(f"{where} refuses the setting {key}: {message}; {hint}") from None


def _close_quietly(session: Any) -> None:
    """Stop a half-made remote session, ignoring what goes wrong (the server may be gone)."""
    try:
        session.stop()
    except (Exception, SystemExit):
        logger.debug("Stopping a failed Spark Connect session failed", exc_info=True)


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (PySpark appends JVM stack traces); a gRPC
    error's status code and details."""
    cause: BaseException | None = exc
    for _ in range(5):  # PySpark wraps the gRPC error (as the cause or context of its own)
        if cause is None:
            break
        code, details = getattr(cause, "code", None), getattr(cause, "details", None)
        if callable(code) and callable(details):
            try:
                return f"gRPC {getattr(code(), 'name', code())}: {details()}"
            except Exception:  # fall back to the message
                break
        cause = cause.__cause__ or cause.__context__
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
