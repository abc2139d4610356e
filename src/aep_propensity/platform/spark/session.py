"""Where the spark backend's SparkSession comes from: local mode, Spark Connect or Databricks Connect.

Every session gets the settings the platform's SQL relies on (:data:`SESSION_CONF`): UTC as the
session time zone (the platform stores UTC timestamps without a zone, as AEP does) and Arrow for
every transfer between Python and the JVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ..config import SparkConfig

#: Settings every session of the platform gets, whichever way it is made.
SESSION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
}


def spark_session(config: SparkConfig) -> SparkSession:
    """A session in local mode (``config.master``) with :data:`SESSION_CONF` and ``config.spark_conf``."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(config.master)
        .appName("aep-propensity")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
    )
    for key, value in {**SESSION_CONF, **config.spark_conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
