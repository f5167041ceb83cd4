"""The Spark engine: a Dagster resource over dagster-pyspark and ODIBI's SparkEngineContext.

* :mod:`~odibi_dagster.engines.spark.resource`: :class:`SparkEngine`, the resource a pipeline
  configures (master URL, Spark conf, Delta, extra Maven packages); at most one SparkSession
  per process;
* :mod:`~odibi_dagster.engines.spark.context`: :class:`SparkEngineContext`, the
  :class:`~odibi_dagster.engines.base.EngineContext` over Spark DataFrames;
* :mod:`~odibi_dagster.engines.spark.io`: the readers and writers per format, in the one
  format registry (:mod:`~odibi_dagster.engines.spark.jdbc` for databases,
  :mod:`~odibi_dagster.engines.spark.hadoop` for atomic file moves);
* :mod:`~odibi_dagster.engines.spark.jars`: Delta, Avro, JDBC and hadoop-azure jars from Maven
  Central through a stable Ivy cache (``~/.cache/odibi_dagster/ivy`` or ``$ODIBI_SPARK_IVY``);
* :mod:`~odibi_dagster.engines.spark.azure`: Azure storage URLs as hadoop-azure reaches them,
  and the environment's credentials set at run time (never in the logged Spark conf);
* :mod:`~odibi_dagster.engines.spark.arrow_types`: Spark types as the pandas engine's
  Arrow type strings.
"""

from odibi_dagster.engines.spark.arrow_types import arrow_type_string
from odibi_dagster.engines.spark.context import SparkEngineContext, persist_frame
from odibi_dagster.engines.spark.jars import (
    DEFAULT_IVY_DIR,
    MAVEN_CENTRAL,
    PACKAGE_ALIASES,
    SQLITE_JDBC,
    avro_package,
    delta_package,
    ivy_dir,
)
from odibi_dagster.engines.spark.resource import SparkEngine

__all__ = [
    "DEFAULT_IVY_DIR",
    "MAVEN_CENTRAL",
    "PACKAGE_ALIASES",
    "SQLITE_JDBC",
    "SparkEngine",
    "SparkEngineContext",
    "arrow_type_string",
    "avro_package",
    "delta_package",
    "ivy_dir",
    "persist_frame",
]
