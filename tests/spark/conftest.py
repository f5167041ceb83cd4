"""One SparkSession for the whole test run (local[2], tiny shuffles, no UI) and a SparkEngine on it.

The session is started here with the engine's own conf (Delta, spark-avro, sqlite-jdbc from
the Ivy cache), so the ``SparkEngine`` fixture finds it running, borrows it and never stops it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark")

from pyspark import SparkContext  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

from odibi_dagster.engines.spark import SQLITE_JDBC, SparkEngine, SparkEngineContext  # noqa: E402

TEST_MASTER = "local[2]"
TEST_PACKAGES = ["avro", SQLITE_JDBC]


def _test_conf(warehouse: Path) -> dict[str, str]:
    return {
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.driver.memory": "1g",
    }


def _engine(warehouse: Path) -> SparkEngine:
    return SparkEngine(
        master=TEST_MASTER,
        app_name="odibi-tests",
        spark_conf=_test_conf(warehouse),
        packages=TEST_PACKAGES,
    )


@pytest.fixture(scope="session")
def spark_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spark-warehouse")


@pytest.fixture(scope="session")
def spark(spark_warehouse: Path) -> Iterator[SparkSession]:
    """The session every Spark test shares."""
    started_here = SparkContext._active_spark_context is None
    builder = SparkSession.builder
    for key, value in _engine(spark_warehouse).session_conf().items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    if started_here:
        session.stop()


@pytest.fixture(scope="session")
def spark_engine(spark: SparkSession, spark_warehouse: Path) -> SparkEngine:
    """A SparkEngine that borrows the shared session."""
    engine = _engine(spark_warehouse)
    assert engine.spark_session.sparkContext is spark.sparkContext
    assert not engine.owns_session
    return engine


@pytest.fixture
def ctx(spark_engine: SparkEngine) -> Iterator[SparkEngineContext]:
    context = spark_engine.context()
    yield context
    context.close()
