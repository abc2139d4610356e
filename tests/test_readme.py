"""Every command in README.md runs as written, or is on the explicit exclusion list with a smoke check.

The commands are the lines of the README's fenced ``bash``/``sh``/``console`` blocks and its inline code
spans that start with a command (``kedro``, ``python``, ``pip``...), split at ``&&``. Each is either in
``RUN`` (run verbatim with bash, with a check of what it left) or excluded (``EXCLUDED`` by exact text,
``EXCLUDED_FAMILIES`` by prefix or fragment) with the reason and, where one is possible, a smoke command.
A command in neither fails ``test_every_readme_command_is_run_or_excluded``, and so does an entry for a
command the README no longer has.

The commands run in the README's order, in one small copy of the project (tests/project_copy.py: the
test environment's sizes, 3,000 people), as a newcomer would type them: the partial runs build on the
full run before them. ``--env postgres`` gets a fresh schema (the copy's conf/postgres/globals.yml is
rewritten), dropped at the end.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg2
import pytest
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from tests.conftest import MLFLOW_INSTALL, PG_DSN, postgres_available, require_module, require_postgres
from tests.project_copy import PROJECT, command_environment, copy_project, output_tail, run_shell

README = PROJECT / "README.md"
# The first word of an inline code span that makes it a command.
EXECUTABLES = {
    "kedro", "python", "python3", "pip", "pytest", "ruff", "aep-emulator", "aep-propensity", "pg_ctlcluster",
    "jupyter", "duckdb", "psql",
}  # fmt: skip
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_FENCES = {"bash", "sh", "shell", "console"}
INLINE = re.compile(r"`([^`\n]+)`")
RAN_NODE = re.compile(r"Running node: ([\w.]+):")

Check = Callable[[Path, subprocess.CompletedProcess], None]


def split_command(line: str) -> list[str]:
    """The commands of one shell line: its parts between ``&&``."""
    return [part.strip() for part in line.split("&&") if part.strip()]


def fenced_commands(language: str, body: str) -> list[str]:
    """The commands of a fenced block: every line of bash/sh (comments skipped, ``\\`` continuations
    joined); only the ``$``-prompted lines of a console block (the rest is output)."""
    body = re.sub(r"\s*\\\n\s*", " ", body)
    lines = [line.strip() for line in body.splitlines()]
    if language == "console":
        lines = [line[1:].strip() for line in lines if line.startswith("$")]
    return [command for line in lines if line and not line.startswith("#") for command in split_command(line)]


def readme_commands(text: str) -> list[str]:
    """Every shell command of a README, in order of first appearance, once each."""
    commands: list[str] = []
    for match in FENCE.finditer(text):
        if match.group(1) in SHELL_FENCES:
            commands += fenced_commands(match.group(1), match.group(2))
    prose = FENCE.sub("", text)
    for span in INLINE.findall(prose):
        commands += [part for part in split_command(span) if part.split()[0] in EXECUTABLES]
    positions = {command: text.find(command) for command in commands}
    return sorted(dict.fromkeys(commands), key=positions.__getitem__)


# --- what a run left -------------------------------------------------------------------------------------


def ran_nodes(result: subprocess.CompletedProcess) -> set[str]:
    """The nodes a ``kedro run`` ran, from its log."""
    return set(RAN_NODE.findall(result.stdout + result.stderr))


def pipeline_nodes(*names: str) -> set[str]:
    """The node names of registered pipelines."""
    bootstrap_project(PROJECT)
    return {node.name for name in names for node in pipelines[name].nodes}


def duckdb_count(database: Path, table: str) -> int:
    """The rows of a table of an embedded platform, read-only."""
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def full_run(data: Path, people: int) -> Check:
    """Every node ran and the platform under ``data`` holds ``people`` enriched profiles and their audiences."""

    def check(project: Path, result: subprocess.CompletedProcess) -> None:
        assert ran_nodes(result) == pipeline_nodes("__default__")
        assert duckdb_count(project / data / "platform.duckdb", "enriched_profiles") == people
        assert (project / data / "08_reporting" / "activation_report.csv").exists()

    return check


def ran_exactly(*names: str) -> Check:
    """Exactly the nodes of the named pipelines ran."""

    def check(project: Path, result: subprocess.CompletedProcess) -> None:
        assert ran_nodes(result) == pipeline_nodes(*names)

    return check


def ran_from_scoring(project: Path, result: subprocess.CompletedProcess) -> None:
    """Scoring and everything downstream of it ran, nothing upstream."""
    bootstrap_project(PROJECT)
    expected = {node.name for node in pipelines["__default__"].from_nodes("score_profiles").nodes}
    assert ran_nodes(result) == expected
    assert "generate_profiles" not in ran_nodes(result)


def ran_only_missing(project: Path, result: subprocess.CompletedProcess) -> None:
    """After complete runs, only the nodes whose outputs are not persisted ran again."""
    assert ran_nodes(result) < pipeline_nodes("__default__")
    assert "train_lightgbm" not in ran_nodes(result)


def printed_ledger(project: Path, result: subprocess.CompletedProcess) -> None:
    """The one-liner printed the ledger's batches."""
    assert "experience_events" in result.stdout
    assert "success" in result.stdout


def built_viz(project: Path, result: subprocess.CompletedProcess) -> None:
    """The static kedro-viz site lists every pipeline."""
    main = json.loads((project / "build" / "api" / "main").read_text())
    assert {pipeline["id"] for pipeline in main["pipelines"]} >= {"__default__", "training", "scoring"}
    assert (project / "build" / "index.html").exists()


def postgres_run(project: Path, result: subprocess.CompletedProcess) -> None:
    """Every node ran and the fresh PostgreSQL schema holds the enriched profiles."""
    assert ran_nodes(result) == pipeline_nodes("__default__")
    schema = postgres_schema(project)
    with psycopg2.connect(PG_DSN) as connection, connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{schema}".enriched_profiles')
        assert cursor.fetchone()[0] == 3_000
    connection.close()


def mlflow_run(project: Path, result: subprocess.CompletedProcess) -> None:
    """Every node ran and the local MLflow store has a finished run with the model's test metrics."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (the optional extra)

    assert ran_nodes(result) == pipeline_nodes("__default__")
    client = MlflowClient(f"sqlite:///{project / 'data' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aep_propensity")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert 0.5 < run.data.metrics["test.lightgbm.roc_auc"] <= 1


# --- the lists -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A README command that runs verbatim, then ``check`` looks at what it left."""

    check: Check
    postgres: bool = False
    needs: str | None = None  # a module of an optional extra; without it the command is skipped


@dataclass(frozen=True)
class Excluded:
    """A README command that is not run, why, and its smoke check (run in ``where``), if one is possible."""

    reason: str
    smoke: str | None = None
    where: str = "copy"  # "copy": the project copy; "project": the repository (benchmarks, packaging)
    needs: str | None = None


RUN: dict[str, Run] = {
    "kedro run": Run(full_run(Path("data"), 3_000)),
    "python -c \"import duckdb; print(duckdb.connect('data/platform.duckdb', read_only=True)"
    ".sql('SELECT * FROM ledger_batches'))\"": Run(printed_ledger),
    "kedro viz build --include-previews": Run(built_viz),
    "kedro run --pipelines data_generation,featurization": Run(ran_exactly("data_generation", "featurization")),
    "kedro run --pipeline training": Run(ran_exactly("training")),
    "kedro run --from-nodes score_profiles": Run(ran_from_scoring),
    "kedro run --only-missing-outputs": Run(ran_only_missing),
    'kedro run --params "data_generation.people=20000"': Run(full_run(Path("data"), 20_000)),
    "kedro run --env postgres": Run(postgres_run, postgres=True),
    "kedro run --env cmle": Run(full_run(Path("data/cmle"), 3_000)),
    "kedro run --env mlflow": Run(mlflow_run, needs="kedro_mlflow"),
}

DRY_INSTALL = "pip install --dry-run --no-deps -q"
EXCLUDED: dict[str, Excluded] = {
    "pip install -e .": Excluded("CI installs the project itself (.ci/run)", f"{DRY_INSTALL} -e .", "project"),
    'pip install -e ".[test]"': Excluded(
        "CI runs this very command (.ci/run)", f'{DRY_INSTALL} -e ".[test]"', "project"
    ),
    'pip install -e ".[mlflow]"': Excluded(
        "an install; .ci/run installs the mlflow extra", f'{DRY_INSTALL} -e ".[mlflow]"', "project"
    ),
    'pip install -e ".[emulator]"': Excluded(
        "an install; the test extra includes it", f'{DRY_INSTALL} -e ".[emulator]"', "project"
    ),
    'pip install -e ".[aep]"': Excluded(
        "an install for a real sandbox (adlfs)", f'{DRY_INSTALL} -e ".[aep]"', "project"
    ),
    'pip install -e ".[spark]"': Excluded(
        "an install; .ci/run installs the spark extra", f'{DRY_INSTALL} -e ".[spark]"', "project"
    ),
    'pip install -e ".[databricks]"': Excluded(
        "an install for Databricks Connect, which conflicts with the spark extra's PySpark (its own venv)",
        f'{DRY_INSTALL} -e ".[databricks]"',
        "project",
    ),
    "pip install --no-deps aepp==0.6.0": Excluded("an install; .ci/run installs it", f"{DRY_INSTALL} aepp==0.6.0"),
    "pytest": Excluded("the test suite itself (recursion)", "pytest --version"),
    "kedro viz run": Excluded("a server", "kedro viz run --help"),
    "kedro mlflow ui --env mlflow": Excluded("a server", "kedro mlflow ui --help", needs="kedro_mlflow"),
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start": Excluded(
        "starts the machine's PostgreSQL server (root)", "pg_lsclusters $(ls /etc/postgresql) main"
    ),
    **{
        f"python -m benchmarks.{name}": Excluded(
            "a long benchmark (minutes, millions of rows)", f"python -m benchmarks.{name.split()[0]} --help", "project"
        )
        for name in (
            "bench_data_generation",
            "check_cmle_fidelity",
            "bench_featurization",
            "bench_pipelines training",
            "bench_full_run",
        )
    },
}

# Families excluded by prefix or fragment: whatever the README says about them.
EXCLUDED_FAMILIES: dict[str, Excluded] = {
    "aep-emulator": Excluded("a server", "aep-emulator --help"),
    "--env aep": Excluded("needs AEP credentials (tested against the emulator in tests/platform/aep)"),
    "--env emulator": Excluded(
        "needs a running aep-emulator; tests/test_emulator_run.py runs this environment end to end"
    ),
    "SPARK_REMOTE=": Excluded(
        "needs a Spark Connect server; tests/platform/spark/test_session.py connects to a real local one"
    ),
    "DATABRICKS_CONFIG_PROFILE=": Excluded("needs a Databricks workspace and databricks-connect (its own venv)"),
    "--env spark": Excluded(
        "minutes of Spark; tests/test_spark_run.py runs this environment end to end against the embedded run",
        "kedro catalog describe-datasets --env spark -p scoring",
    ),
}


def exclusion(command: str) -> Excluded | None:
    """Why a command is not run, if it is excluded."""
    if command in EXCLUDED:
        return EXCLUDED[command]
    for family, excluded in EXCLUDED_FAMILIES.items():
        if command.startswith(family) or f" {family}" in command:
            return excluded
    return None


def unaccounted(commands: list[str]) -> list[str]:
    """The commands neither run nor excluded."""
    return [command for command in commands if command not in RUN and exclusion(command) is None]


COMMANDS = readme_commands(README.read_text())


# --- the tests -------------------------------------------------------------------------------------------


def test_every_readme_command_is_run_or_excluded():
    assert not unaccounted(COMMANDS), "README commands neither run nor excluded in tests/test_readme.py"
    stale = [command for command in [*RUN, *EXCLUDED] if command not in COMMANDS]
    assert not stale, "entries of tests/test_readme.py for commands the README no longer has"


def test_a_new_command_is_caught():
    text = README.read_text() + "\n```bash\nkedro run --to-nodes train_lightgbm && kedro viz run\n```\n"
    text += "Or `aep-emulator serve --port 8080`, `kedro run --env aep`, `python -m new_tool`.\n"
    assert unaccounted(readme_commands(text)) == ["kedro run --to-nodes train_lightgbm", "python -m new_tool"]


def test_console_blocks_keep_only_prompted_lines():
    text = "```console\n$ kedro run \\\n  --env cmle\nINFO done\n```\n```python\nkedro run --no\n```\n"
    assert readme_commands(text) == ["kedro run --env cmle"]


def postgres_schema(project: Path) -> str:
    """The schema the copy's postgres environment uses."""
    return re.search(r"^\s*schema: (\S+)", (project / "conf/postgres/globals.yml").read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    """The copy of the project the commands run in, with a fresh PostgreSQL schema (dropped afterwards)."""
    copy = copy_project(tmp_path_factory.mktemp("readme") / "project")
    globals_file = copy / "conf/postgres/globals.yml"
    schema = f"test_readme_{uuid.uuid4().hex[:12]}"
    globals_file.write_text(re.sub(r"(?m)^(\s*schema:) \S+", rf"\1 {schema}", globals_file.read_text()))
    assert postgres_schema(copy) == schema
    yield copy
    if postgres_available():
        with psycopg2.connect(PG_DSN) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.close()


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(command, marks=[pytest.mark.postgres] if RUN[command].postgres else [], id=command[:60])
        for command in COMMANDS
        if command in RUN
    ],
)
def test_readme_command_runs(command: str, project: Path):
    spec = RUN[command]
    if spec.postgres:
        require_postgres()
    if spec.needs:
        require_module(spec.needs, MLFLOW_INSTALL)
    result = run_shell(command, project)
    assert result.returncode == 0, output_tail(result)
    spec.check(project, result)


SMOKES = {
    **{command: excluded for command, excluded in EXCLUDED.items() if excluded.smoke},
    **{family: excluded for family, excluded in EXCLUDED_FAMILIES.items() if excluded.smoke},
}


@pytest.mark.parametrize(
    "command",
    [pytest.param(command, id=command[:60]) for command in SMOKES],
)
def test_excluded_command_smoke(command: str, project: Path):
    spec = SMOKES[command]
    executable = spec.smoke.split()[0]
    if shutil.which(executable, path=command_environment()["PATH"]) is None:
        pytest.skip(f"{executable} is not on this machine")
    if spec.needs:
        require_module(spec.needs, MLFLOW_INSTALL)
    result = run_shell(spec.smoke, PROJECT if spec.where == "project" else project)
    assert result.returncode == 0, output_tail(result)
    assert "does not provide the extra" not in result.stdout + result.stderr
