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
#: IMS tokens (:attr:`.service.Emulator.token_ttl`).
FAULT_KEYS = frozenset(
    {"rate_limit_every", "retry_after", "error_every", "fail_batches", "batch_delay_seconds", "token_ttl"}
)


@dataclass
class EmulatorConfig:
    """Everything the emulator needs to start: where it listens, stores, and whom it accepts."""

    host: str = "127.0.0.1"
    port: int = 8642
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


def load_faults(value: str | None) -> dict[str, Any]:
    """Faults from a JSON file path or an inline JSON object; unknown switches are an error."""
    if not value:
        return {}
    text = Path(value).read_text() if not value.lstrip().startswith("{") else value
    faults = json.loads(text)
    return check_faults(faults)


def check_faults(faults: Any) -> dict[str, Any]:
    """Return ``faults`` if it is an object of known switches, else raise ValueError."""
    if not isinstance(faults, dict):
        raise ValueError("faults must be a JSON object")
    unknown = sorted(set(faults) - FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown fault switches {unknown}; known: {sorted(FAULT_KEYS)}")
    return dict(faults)
