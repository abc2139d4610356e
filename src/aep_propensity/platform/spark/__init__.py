"""The spark backend: the Platform port on Apache Spark (PySpark 4, in the ``spark`` extra).

Tables are Parquet folders under the data root, named by a ledger in an SQLite file
(:mod:`.store`), and registered in the session by path before each statement (:mod:`.tables`);
SQL is the project's canonical SQL transpiled to Spark SQL; scoring runs on the executors.
"""

from .platform import SparkPlatform

__all__ = ["SparkPlatform"]
