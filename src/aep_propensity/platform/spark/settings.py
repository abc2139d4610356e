"""What the spark backend reads of its configuration (the platform's ``SparkConfig`` model is one)."""

from __future__ import annotations

from typing import Literal, Protocol


class SparkSettings(Protocol):
    """The options of the spark backend, validated by the platform's configuration model."""

    path: str
    ledger: str | None
    session: Literal["local", "connect", "databricks"]
    master: str
    remote: str | None
    driver_memory: str
    shuffle_partitions: int
    spark_conf: dict[str, str]
    export_rows_per_file: int
    interactive_row_limit: int
