"""The Platform port: every type and operation that datasets and pipelines use to touch "the platform".

Backends (``local`` on DuckDB or PostgreSQL, ``aep`` on Adobe Experience Platform) implement
:class:`Platform` and import only this core, never each other. Everything a backend records about
what really happened (datasets, batches, exports, query jobs, audience jobs, deliveries) lives in
its ledger, readable through the same port.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import pandas as pd
import pyarrow as pa

LogicalType = Literal["string", "int64", "float64", "bool", "timestamp", "date"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}

logger = logging.getLogger(__name__)

#: SQL dialect (sqlglot's name) in which the project writes its SQL; backends transpile from it.
CANONICAL_DIALECT = "duckdb"

#: Rows an interactive query may return, as on AEP's Query Service.
INTERACTIVE_ROW_LIMIT = 50_000

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PATH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


class PlatformError(RuntimeError):
    """An operation on the platform failed; the message says which and why."""


class SchemaMismatchError(PlatformError, ValueError):
    """Data offered for ingestion does not match the dataset's schema."""


def check_name(name: str, what: str = "table") -> str:
    """Return ``name`` if it is a safe lower-case SQL identifier, else raise naming it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore (at most 63 characters)"
        )
    return name


def check_path_name(name: str, what: str) -> str:
    """Return ``name`` if it is safe as one folder or file name (an audience, a destination), else raise naming it."""
    if not isinstance(name, str) or not _PATH_NAME.fullmatch(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use letters, digits, '_' and '-', starting with a letter or digit "
            "(at most 100 characters), as it becomes a folder or file name"
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


FieldType = Literal["number", "string", "boolean", "date"]
_FIELD_TYPES = ("number", "string", "boolean", "date")


@dataclass(frozen=True)
class Field:
    """Where a PQL path lives in a flat profile table (a checked column name) and its type."""

    column: str
    type: FieldType

    def __post_init__(self) -> None:
        check_name(self.column, "column")
        if self.type not in _FIELD_TYPES:
            raise ValueError(f"field type {self.type!r} is not one of {list(_FIELD_TYPES)}")


@dataclass(frozen=True)
class ProfileSource:
    """Where audiences find profiles: a table with an ``ecid`` column, and PQL paths mapped to its columns."""

    table: str
    fields: dict[str, Field]

    def to_json(self) -> str:
        """A stable JSON form, stored with the audience."""
        return json.dumps(
            {"table": self.table, "fields": {k: asdict(v) for k, v in sorted(self.fields.items())}}, sort_keys=True
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ProfileSource:
        """From ``{table, fields: {path: {column, type}}, tenant}``; ``{tenant}`` in a path becomes the tenant."""
        tenant = config.get("tenant", "")
        fields = {path.replace("{tenant}", tenant): Field(**spec) for path, spec in config["fields"].items()}
        return cls(check_name(config["table"]), fields)


@dataclass(frozen=True)
class ParquetMap:
    """Chunks that are ``transform`` applied to each record batch of the Parquet files at ``url``.

    A chunk sequence that offers one (``parquet_source()``) lets a backend that computes where the
    data is (Spark) run the transform on its workers instead of streaming the chunks through the
    caller; every other backend iterates the chunks.
    """

    url: str
    transform: Callable[[pa.RecordBatch], pa.Table]


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
    run_id: str | None = None  # the platform session (one per process: one run) that made the batch


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

    def __post_init__(self) -> None:
        check_path_name(self.name, "audience")


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


@dataclass(frozen=True)
class DeliveryResult:
    """What a destination did with one audience."""

    members: int
    files: int = 0
    requests: int = 0
    bytes: int = 0
    location: str | None = None

    def delivery(self, delivery_id: str, job: AudienceJob, destination: str, started: datetime) -> Delivery:
        """The ledger's record of this successful delivery of ``job`` to ``destination``, completed now."""
        return Delivery(
            delivery_id,
            job.id,
            job.audience_name,
            destination,
            "success",
            self.members,
            self.files,
            self.requests,
            self.bytes,
            started,
            utc_now(),
            self.location,
        )


class Destination(Protocol):
    """Where activated audiences go."""

    name: str

    def deliver(
        self, audience: str, audience_id: str, job_id: str, key: str, members: pa.RecordBatchReader
    ) -> DeliveryResult:
        """Deliver one audience's members (their reader has their columns even when there are none) under the
        delivery's ``key`` (:func:`delivery_key`)."""
        ...


def utc_now() -> datetime:
    """The current UTC time, naive (the platform stores UTC without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Platform(Protocol):
    """The operations of the Platform port (see docs/architecture.md)."""

    #: The most rows one interactive query may return (AEP's Query Service caps it at 50,000).
    interactive_row_limit: int

    def query(self, sql: str) -> pd.DataFrame:
        """Run an interactive query (canonical dialect); at most ``interactive_row_limit`` rows."""
        ...

    def create_table_as(self, name: str, sql: str) -> TableHandle:
        """Materialise ``sql`` as table ``name``, replacing it (atomically on the local backend; on AEP a drop,
        then a CTAS)."""
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

    def exists(self, table: str) -> bool:
        """Whether ``table`` exists on the platform."""
        ...

    def handle(self, table: str) -> TableHandle:
        """A handle on an existing table."""
        ...

    def read_batches(self, sql: str, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
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

    def audience_jobs(self, latest_only: bool = True) -> list[AudienceJob]:
        """The audience jobs, newest first; by default only each audience's latest successful one."""
        ...

    def activate(
        self, job_ids: list[str], destination: Destination, attributes: list[str], force: bool = False
    ) -> list[Delivery]:
        """Deliver evaluated audiences to a destination; a job already delivered there is skipped unless forced."""
        ...

    def deliveries(self, destination: str | None = None) -> list[Delivery]:
        """The ledger's deliveries, newest first, optionally to one destination."""
        ...


def jobs_to_deliver(
    jobs: Iterable[AudienceJob], destination: str, delivered: Iterable[Delivery], force: bool
) -> list[AudienceJob]:
    """The delivery policy of every backend: the ``jobs`` to send to ``destination``, each once.

    A job that already has a successful delivery there (in ``delivered``) is skipped, and the skip
    logged, unless ``force``.
    """
    sent = {d.job_id for d in delivered if d.destination == destination and d.status == "success"}
    chosen: dict[str, AudienceJob] = {}
    for job in jobs:
        if job.id in sent and not force:
            logger.info("Audience %s (job %s) already delivered to %s: skipped", job.audience_name, job.id, destination)
        else:
            chosen.setdefault(job.id, job)
    return list(chosen.values())


def delivery_key(audience_id: str, version: int, members: pa.RecordBatchReader) -> str:
    """The key of a delivery, read from its ``members`` (in ``ecid`` order) to the end: the same for the same
    audience version, columns and rows, whichever evaluation job found them, so that a receiver can tell a
    repeat from new data; any other member, attribute value or version changes it."""
    digest = hashlib.sha256(json.dumps([audience_id, version, members.schema.names]).encode())
    for batch in members:
        rows = zip(*(column.to_pylist() for column in batch.columns), strict=True)
        digest.update("".join(json.dumps(row, default=str) + "\n" for row in rows).encode())
    return digest.hexdigest()[:32]
