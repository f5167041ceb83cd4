"""One SparkSession for the whole test run (local[2], tiny shuffles, no UI) and a SparkEngine on it.

The session is started here with the engine's own conf (Delta, spark-avro, sqlite-jdbc and
hadoop-azure from the Ivy cache), so the ``SparkEngine`` fixture finds it running, borrows it
and never stops it. Its event log (uncompressed, under ``spark_events``) lets tests check what
Spark records, e.g. that no storage key reaches it.
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


def _test_conf(root: Path) -> dict[str, str]:
    return {
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.driver.memory": "1g",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": (root / "events").as_uri(),
        "spark.eventLog.compress": "false",
    }


def _engine(root: Path) -> SparkEngine:
    return SparkEngine(
        master=TEST_MASTER,
        app_name="odibi-tests",
        spark_conf=_test_conf(root),
        packages=TEST_PACKAGES,
        azure=True,  # about a second more to resolve (cached) than without
    )


@pytest.fixture(scope="session")
def spark_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared session's folder: ``warehouse/`` (catalog tables) and ``events/`` (its event log)."""
    root = tmp_path_factory.mktemp("spark-session")
    (root / "warehouse").mkdir()
    (root / "events").mkdir()
    return root


@pytest.fixture(scope="session")
def spark_events(spark_warehouse: Path) -> Path:
    """The folder of the shared session's event log."""
    return spark_warehouse / "events"


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
