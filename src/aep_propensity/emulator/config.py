"""The emulator's configuration: command-line options with environment-variable defaults."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aep_propensity.platform.core.port import check_name

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Fault switches the emulator understands: ``rate_limit_every``/``retry_after``/``error_every`` are
#: injected in front of every AEP path (:func:`.app.injected_fault`), ``fail_batches`` and
#: ``batch_delay_seconds`` act on batch promotion (:func:`.ingestion.promote`), ``token_ttl`` on new
#: IMS tokens (:attr:`.service.Emulator.token_ttl`), ``limits`` overrides :data:`LIMITS` at run time.
FAULT_KEYS = frozenset(
    {"rate_limit_every", "retry_after", "error_every", "fail_batches", "batch_delay_seconds", "token_ttl", "limits"}
)

#: AEP's Batch Ingestion bounds, as the emulator enforces them (:mod:`.ingestion`); ``--limits`` (or the
#: ``limits`` fault) lowers them so a test crosses one cheaply. ``put_file_bytes``: one PUT, the 256 MB
#: gateway threshold of the Batch Ingestion API (a larger file is uploaded in parts);
#: ``part_bytes``: one large-file part, the API's accepted range 0-512000000; ``files_per_batch`` and
#: ``batch_bytes``: 25,000 files and 1 TB per batch, Adobe's data ingestion guardrails
#: (https://experienceleague.adobe.com/en/docs/experience-platform/ingestion/guardrails and
#: https://experienceleague.adobe.com/en/docs/experience-platform/ingestion/batch/api-overview).
#: Destinations (:mod:`.flows`, :mod:`.flow_runs`): ``max_audiences`` (250) and ``max_attributes`` (50) per
#: dataflow (https://experienceleague.adobe.com/en/docs/experience-platform/destinations/guardrails),
#: ``rows_per_file`` (5 million) per exported file, and ``dlz_retention_days`` (7) of Data Landing Zone files
#: (https://experienceleague.adobe.com/en/docs/experience-platform/destinations/catalog/cloud-storage/data-landing-zone).
#: Query Service (:mod:`.wire`): ``interactive_rows`` (50,000) returned of one query to a PostgreSQL client
#: (https://experienceleague.adobe.com/en/docs/experience-platform/query/guardrails).
LIMITS: dict[str, int] = {
    "put_file_bytes": 256 * 1024 * 1024,
    "part_bytes": 512_000_000,
    "files_per_batch": 25_000,
    "batch_bytes": 10**12,
    "max_audiences": 250,
    "max_attributes": 50,
    "rows_per_file": 5_000_000,
    "dlz_retention_days": 7,
    "interactive_rows": 50_000,
}


@dataclass
class EmulatorConfig:
    """Everything the emulator needs to start: where it listens, stores, and whom it accepts."""

    host: str = "127.0.0.1"
    port: int = 8642
    #: The port of Query Service's PostgreSQL wire (:mod:`.wire`) on ``host``; 0: a free port picked at start.
    wire_port: int = 0
    dsn: str = DEFAULT_DSN
    schema: str = "aep_emulator"
    data_dir: Path = Path("data/emulator")
    client_id: str = "emulator-client"
    client_secret: str = "emulator-secret"
    org_id: str = "EMULATOR@AdobeOrg"
    tenant: str = "acme"
    token_ttl: int = 86399
    query_timeout_seconds: int = 600
    faults: dict[str, Any] = field(default_factory=dict)
    #: A JSON-lines file every exchange is appended to (:mod:`.recording`), or None: no recording.
    record: Path | None = None
    limits: dict[str, int] = field(default_factory=lambda: dict(LIMITS))

    def __post_init__(self) -> None:
        """Refuse schema names that are not plain identifiers (with ``_state`` appended too) and a
        query timeout under one second."""
        check_name(self.schema, "schema")
        check_name(self.state_schema, "state schema (the schema name plus '_state')")
        if self.query_timeout_seconds < 1:
            raise ValueError("query_timeout_seconds must be at least 1")

    def __repr__(self) -> str:
        return f"EmulatorConfig(host={self.host!r}, port={self.port}, schema={self.schema!r}, tenant={self.tenant!r})"

    @property
    def state_schema(self) -> str:
        """The PostgreSQL schema of the emulator's own state (``emu_*`` tables), apart from the dataset tables."""
        return f"{self.schema}_state"

    @property
    def base_url(self) -> str:
        """The root URL every AEP path and the IMS endpoint hang from."""
        return f"http://{self.host}:{self.port}"

    @property
    def dlz_root(self) -> Path:
        """The folder holding the Data Landing Zone containers."""
        return self.data_dir / "dlz"


def env_default(name: str, default: str) -> str:
    """The value of environment variable ``name``, or ``default``."""
    return os.environ.get(name, default)


def _json_option(value: str) -> Any:
    """A JSON file path's content or an inline JSON object, parsed."""
    return json.loads(Path(value).read_text() if not value.lstrip().startswith("{") else value)


def load_faults(value: str | None) -> dict[str, Any]:
    """Faults from a JSON file path or an inline JSON object; unknown switches are an error."""
    return check_faults(_json_option(value)) if value else {}


def load_limits(value: str | None) -> dict[str, int]:
    """:data:`LIMITS` with the overrides of a JSON file path or an inline JSON object (see :func:`check_limits`)."""
    return {**LIMITS, **(check_limits(_json_option(value)) if value else {})}


def check_limits(limits: Any) -> dict[str, int]:
    """Return ``limits`` if it is an object of known limits, each a positive integer, else raise ValueError."""
    if not isinstance(limits, dict):
        raise ValueError("limits must be a JSON object")
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise ValueError(f"unknown limits {unknown}; known: {sorted(LIMITS)}")
    bad = sorted(key for key, value in limits.items() if type(value) is not int or value < 1)
    if bad:
        raise ValueError(f"limits {bad} must be positive integers")
    return dict(limits)


def check_faults(faults: Any) -> dict[str, Any]:
    """Return ``faults`` if it is an object of known switches, else raise ValueError."""
    if not isinstance(faults, dict):
        raise ValueError("faults must be a JSON object")
    unknown = sorted(set(faults) - FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown fault switches {unknown}; known: {sorted(FAULT_KEYS)}")
    if "limits" in faults:
        check_limits(faults["limits"])
    return dict(faults)
