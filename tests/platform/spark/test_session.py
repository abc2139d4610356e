"""Where the spark backend's session comes from, for real: local mode, a real Spark Connect server started
here as a subprocess, an unreachable server, a process without gRPC, and Databricks Connect absent."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aep_propensity.platform import PlatformError
from aep_propensity.platform.config import SparkConfig
from aep_propensity.platform.spark import session as session_module
from aep_propensity.platform.spark.session import CLASSIC_ONLY_CONF, CONNECT_TIMEOUT_SECONDS, SESSION_CONF
from aep_propensity.platform.spark.session import spark_session as make_session
from tests.conftest import require_module

SERVER_START_SECONDS = 90.0  # a failure threshold: it starts in 6-25 s (2 cores, idle to loaded)
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def config(tmp_path: Path, **options) -> SparkConfig:
    """A spark backend configuration under ``tmp_path``."""
    return SparkConfig(backend="spark", path=str(tmp_path / "spark"), **options)


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def connect_server_process(tmp_path_factory) -> Iterator[tuple[subprocess.Popen, int, Path] | None]:
    """A real Spark Connect server (PySpark's own jars, through its spark-submit) on a free loopback port,
    in its own process group, started as the module begins (it boots while the local tests run) and
    stopped afterwards."""
    if importlib.util.find_spec("pyspark") is None:
        yield None
        return
    spark_home = Path(importlib.util.find_spec("pyspark").origin).parent
    port = free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    command = [
        str(spark_home / "bin" / "spark-submit"),
        "--class",
        SERVER_CLASS,
        "--name",
        "aep-propensity-test-connect",
        "--master",
        "local[2]",
        "--driver-memory",
        "1g",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf",
        "spark.ui.enabled=false",
    ]
    environment = {**os.environ, "SPARK_HOME": str(spark_home)}
    for name in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "PYSPARK_SUBMIT_ARGS"):
        environment.pop(name, None)
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    try:
        yield server, port, log
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


@pytest.fixture
def connect_server(connect_server_process) -> str:
    """The ``sc://`` URL of the real Spark Connect server, once it listens."""
    require_module("pyspark", "pip install -e '.[spark]'")
    server, port, log = connect_server_process
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not listening(port):
        if server.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"the Spark Connect server did not start within {SERVER_START_SECONDS:g} s:\n{tail}")
        time.sleep(0.2)
    return f"sc://127.0.0.1:{port}"


# -- local mode ----------------------------------------------------------------------------------------


def test_local_session_has_the_platform_settings(spark_session):
    """The shared local session (made by spark_session(config)) is classic, with every setting."""
    from pyspark.sql import SparkSession as ClassicSession  # noqa: PLC0415 - pyspark is optional (the spark extra)

    assert isinstance(spark_session, ClassicSession)
    for key, value in SESSION_CONF.items():
        assert spark_session.conf.get(key) == value
    assert spark_session.conf.get("spark.sql.shuffle.partitions") == "8"
    assert spark_session.conf.get("spark.driver.memory") == "2g"
    assert spark_session.conf.get("spark.ui.enabled") == "false"
    assert spark_session.sql("SELECT 1 AS x").collect()[0].x == 1


def test_a_second_local_session_shares_the_jvm_and_takes_runtime_settings(spark_session, tmp_path):
    """In-process, local mode returns the running session (same JVM) with the runtime settings applied;
    the shared session is not stopped."""
    again = make_session(config(tmp_path, spark_conf={"spark.aep_propensity.test": "yes"}))
    assert again is spark_session
    assert again.conf.get("spark.aep_propensity.test") == "yes"
    assert spark_session.range(3).count() == 3


def test_local_mode_with_spark_remote_set_is_an_error(tmp_path, monkeypatch):
    """SPARK_REMOTE would make PySpark's builder connect instead: local mode says so rather than comply."""
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:1")
    with pytest.raises(PlatformError, match="SPARK_REMOTE is set"):
        make_session(config(tmp_path))


# -- Spark Connect -------------------------------------------------------------------------------------


def test_connect_session_on_a_real_server(connect_server, tmp_path):
    """A real Spark Connect server: the session is a Connect session, with the runtime settings."""
    require_module("grpc", "pip install -e '.[spark]'")
    from pyspark.sql.connect.session import SparkSession as ConnectSession  # noqa: PLC0415 - optional

    session = make_session(
        config(tmp_path, session="connect", remote=connect_server, spark_conf={"spark.sql.ansi.enabled": "true"})
    )
    try:
        assert isinstance(session, ConnectSession)
        assert session.sql("SELECT 40 + 2 AS answer").collect()[0].answer == 42
        for key, value in SESSION_CONF.items():
            if key not in CLASSIC_ONLY_CONF:
                assert session.conf.get(key) == value
        assert session.conf.get("spark.sql.shuffle.partitions") == "8"
        assert session.conf.get("spark.sql.ansi.enabled") == "true"
    finally:
        session.stop()


def test_connect_refuses_a_static_setting_by_name(connect_server, tmp_path):
    """Static settings only apply to local mode: one in spark_conf is an error naming it."""
    require_module("grpc", "pip install -e '.[spark]'")
    with pytest.raises(PlatformError, match=r"spark\.driver\.memory.*local mode only"):
        make_session(
            config(tmp_path, session="connect", remote=connect_server, spark_conf={"spark.driver.memory": "1g"})
        )


def test_connect_without_a_server_fails_in_bounded_time(tmp_path):
    """Nothing listening: a PlatformError in bounded time (not Spark Connect's ten minutes of retries),
    and the token of the URL never in the message."""
    require_module("pyspark", "pip install -e '.[spark]'")
    require_module("grpc", "pip install -e '.[spark]'")
    remote = f"sc://127.0.0.1:{free_port()}/;token=not-a-real-secret-1234"
    started = time.monotonic()
    with pytest.raises(PlatformError) as caught:
        make_session(config(tmp_path, session="connect", remote=remote))
    elapsed = time.monotonic() - started
    assert elapsed < CONNECT_TIMEOUT_SECONDS + 5
    message = str(caught.value)
    assert "connection refused" in message
    assert "not-a-real-secret-1234" not in message
    assert "token=***" in message


def test_connect_to_a_silent_listener_fails_in_bounded_time(tmp_path, monkeypatch):
    """Something accepts TCP connections but never speaks gRPC: a PlatformError after the bounded wait
    (shortened here from CONNECT_TIMEOUT_SECONDS to 2 s)."""
    require_module("pyspark", "pip install -e '.[spark]'")
    require_module("grpc", "pip install -e '.[spark]'")
    monkeypatch.setattr(session_module, "CONNECT_TIMEOUT_SECONDS", 2.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(PlatformError, match="accepts TCP connections, but no gRPC connection"):
            make_session(config(tmp_path, session="connect", remote=f"sc://127.0.0.1:{silent.getsockname()[1]}"))
        assert 2.0 <= time.monotonic() - started < 2.0 + 8


def test_connect_without_a_remote_names_where_to_set_it(tmp_path):
    """session: connect and no URL: the error names SPARK_REMOTE and platform.remote."""
    with pytest.raises(PlatformError, match=r"SPARK_REMOTE.*platform\.remote"):
        make_session(config(tmp_path, session="connect"))


def test_connect_rejects_a_url_that_is_not_sc(tmp_path):
    """A URL that is not sc://: an error with the URL masked."""
    with pytest.raises(PlatformError, match=r"sc://host:port") as caught:
        make_session(config(tmp_path, session="connect", remote="http://example.invalid/;token=abcdefgh"))
    assert "abcdefgh" not in str(caught.value)


def test_connect_without_grpc_exits_non_zero_with_the_message(tmp_path):
    """In a process where grpc cannot be imported, PySpark would sys.exit(0) under ``python -c``: the
    session instead fails (exit status 1) saying what to install."""
    require_module("pyspark", "pip install -e '.[spark]'")
    code = (
        "import sys; sys.modules['grpc'] = None\n"
        "from aep_propensity.platform.config import SparkConfig\n"
        "from aep_propensity.platform.spark.session import spark_session\n"
        f"spark_session(SparkConfig(backend='spark', path={str(tmp_path)!r}, session='connect', "
        "remote='sc://127.0.0.1:1'))\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "SPARK_REMOTE"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environment, check=False
    )
    assert result.returncode != 0, result.stderr
    assert "PlatformError" in result.stderr
    assert "grpcio" in result.stderr
    assert "pip install -e '.[spark]'" in result.stderr


# -- Databricks Connect --------------------------------------------------------------------------------


def test_databricks_without_databricks_connect_names_the_extra(tmp_path):
    """databricks-connect is not installed here (it replaces pyspark): the error names the extra and its
    own virtual environment."""
    if importlib.util.find_spec("databricks") is not None and importlib.util.find_spec("databricks.connect"):
        pytest.skip("databricks-connect is installed in this environment")
    with pytest.raises(PlatformError, match=r"databricks extra in its own virtual environment"):
        make_session(config(tmp_path, session="databricks"))
