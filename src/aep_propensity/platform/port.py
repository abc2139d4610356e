"""The Platform port: the one interface every pipeline step uses to touch "the platform".

Backends (the embedded DuckDB database, PostgreSQL, and later AEP itself) implement
:class:`Platform`. Everything a backend records about what really happened (datasets, batches,
exports, query jobs) lives in its ledger, readable through the same port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from .local_audiences import ProfileSource

LogicalType = Literal["string", "int64", "float64", "bool", "timestamp", "date"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}

#: SQL dialect (sqlglot's name) in which the project writes its SQL; backends transpile from it.
CANONICAL_DIALECT = "duckdb"

#: Rows an interactive query may return, as on AEP's Query Service.
INTERACTIVE_ROW_LIMIT = 50_000

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PlatformError(RuntimeError):
    """An operation on the platform failed; the message says which and why."""


class SchemaMismatchError(PlatformError, ValueError):
    """Data offered for ingestion does not match the dataset's schema."""


def check_name(name: str, what: str = "table") -> str:
    """Return ``name`` if it is a safe lower-case SQL identifier, else raise naming it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore (at most 63 characters)"
        )
    return name


@dataclass(frozen=True)
class Column:
    """A column of a platform dataset with its logical type."""

    name: str
    type: LogicalType

    def __post_init__(self) -> None:
        if self.type not in ARROW_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}; use one of {list(ARROW_TYPES)}")


@dataclass(frozen=True)
class DatasetSpec:
    """What the platform knows of a dataset: its columns, identity column and profile flag."""

    name: str
    columns: tuple[Column, ...]
    identity: str | None = None
    profile_enabled: bool = False

    def __post_init__(self) -> None:
        check_name(self.name, "dataset")
        for column in self.columns:
            check_name(column.name.lower(), "column")
        if self.identity is not None and self.identity not in self.column_names:
            raise ValueError(f"dataset {self.name!r}: identity column {self.identity!r} is not one of its columns")

    @property
    def column_names(self) -> list[str]:
        """The column names in order."""
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema that ingested chunks are converted to."""
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])

    @classmethod
    def from_config(cls, name: str, config: dict) -> DatasetSpec:
        """Build a spec from catalog configuration ``{columns: {name: type}, identity, profile_enabled}``."""
        columns = tuple(Column(col, typ) for col, typ in config["columns"].items())
        return cls(name, columns, config.get("identity"), bool(config.get("profile_enabled", False)))


@dataclass(frozen=True)
class TableHandle:
    """A light reference to a platform table: what nodes pass around instead of its rows."""

    name: str
    columns: tuple[str, ...]
    row_count: int


@dataclass(frozen=True)
class BatchRecord:
    """The ledger's record of one ingestion batch."""

    id: str
    dataset: str
    status: str
    rows: int
    files: int
    created: datetime
    completed: datetime | None
    error: str | None = None


@dataclass(frozen=True)
class ExportRecord:
    """The ledger's record of one export of a table to a Data Landing Zone style location."""

    id: str
    table: str
    path: str
    export_time: str
    rows: int
    files: int
    bytes: int


@dataclass(frozen=True)
class AudienceDefinition:
    """An audience as the user writes it: a name, a description and a PQL rule over profiles."""

    name: str
    rule: str
    description: str = ""


@dataclass(frozen=True)
class AudienceRecord:
    """The platform's audience after an upsert: ``change`` is created, updated or unchanged."""

    id: str
    name: str
    rule: str
    version: int
    change: str


@dataclass(frozen=True)
class AudienceJob:
    """One evaluation of an audience (AEP's segment job): status, timing and member count."""

    id: str
    audience_id: str
    audience_name: str
    status: str
    members: int
    started: datetime
    completed: datetime | None
    error: str | None = None


def latest_successful(jobs: list[AudienceJob]) -> list[AudienceJob]:
    """Each audience's latest successful job, from ``jobs`` ordered newest first."""
    latest: dict[str, AudienceJob] = {}
    for job in jobs:
        if job.status == "SUCCEEDED":
            latest.setdefault(job.audience_id, job)
    return list(latest.values())


@dataclass(frozen=True)
class ActivationRequest:
    """Which evaluated audiences (by job id) to deliver, and whether to repeat earlier deliveries."""

    job_ids: tuple[str, ...]
    force: bool = False


@dataclass(frozen=True)
class Delivery:
    """One activation of an evaluated audience to a destination, as the ledger records it."""

    id: str
    job_id: str
    audience_name: str
    destination: str
    status: str
    members: int
    files: int
    requests: int
    bytes: int
    started: datetime
    completed: datetime | None
    location: str | None = None
    error: str | None = None


def utc_now() -> datetime:
    """The current UTC time, naive (the platform stores UTC without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Platform(Protocol):
    """The operations of the Platform port (see docs/architecture.md)."""

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query (canonical dialect); at most ``INTERACTIVE_ROW_LIMIT`` rows."""
        ...

    def create_table_as(self, name: str, sql: str) -> TableHandle:
        """Materialise ``sql`` as table ``name``, replacing it atomically."""
        ...

    def create_view(self, name: str, sql: str) -> TableHandle:
        """Define ``name`` as a view of ``sql``: always current with the tables it reads."""
        ...

    def export(self, table: str, location: str) -> ExportRecord:
        """Write ``table`` as Parquet parts under ``location/<table>/exportTime=.../``."""
        ...

    def ingest(
        self, spec: DatasetSpec, chunks: Iterable[pa.Table | pd.DataFrame], replace: bool = False
    ) -> BatchRecord:
        """Ingest all ``chunks`` into dataset ``spec`` as one batch, all or nothing."""
        ...

    def handle(self, table: str) -> TableHandle:
        """A handle on an existing table."""
        ...

    def read_batches(self, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream the rows of ``sql`` as record batches (bounded memory)."""
        ...

    def batches(self, dataset: str | None = None) -> list[BatchRecord]:
        """The ledger's batches, newest first, optionally for one dataset."""
        ...

    def upsert_audience(self, definition: AudienceDefinition, source: ProfileSource) -> AudienceRecord:
        """Create the audience, or update it when its rule, description or source changed (by name)."""
        ...

    def evaluate_audience(self, audience_id: str) -> AudienceJob:
        """Evaluate an audience now (a segment job) and materialise its members."""
        ...

    def activate(
        self, job_ids: list[str], destination: Any, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver evaluated audiences to a destination; a job already delivered there is skipped unless forced."""
        ...
