"""The odibi code location whose runs spread their steps over Celery workers (deployment test).

Installed as the package ``odibi_distributed`` on the code server and on every worker, each in
a folder of its own (the same code, no shared disk): the code server is started with
``dagster api grpc -m odibi_distributed --empty-working-directory``, so runs tell the workers
to import the package from their own Python path, not from the server's folder. The pipelines'
``base_dir`` (``$ODIBI_BASE_DIR``) is an ``abfs://`` prefix: datasets, tracker records and
stories pass between the workers only through the blob store.

Spark steps run on the standalone cluster at ``$ODIBI_SPARK_MASTER``: each step's driver runs in
the Celery worker that took the step, its executors on the cluster's worker. The drivers' event
logs go to ``$ODIBI_SPARK_EVENTS`` (a folder of each Celery worker's own) and their log to the
Celery worker's output.
"""

import os
import sys
from pathlib import Path

from dagster_celery import celery_executor

from odibi_dagster import SparkEngine, build_definitions

spark = SparkEngine(
    master=os.environ["ODIBI_SPARK_MASTER"],
    app_name="odibi-distributed",
    spark_conf={
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": "512m",
        "spark.executor.memory": "512m",
        "spark.cores.max": "1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # no progress bars in the Celery worker's log
        # Small data: one shuffle partition, and Delta's log replay in one task instead of 50.
        "spark.sql.shuffle.partitions": "1",
        "spark.databricks.delta.snapshotPartitions": "1",
        "spark.pyspark.python": sys.executable,
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": Path(os.environ["ODIBI_SPARK_EVENTS"]).as_uri(),
        "spark.eventLog.compress": "false",
    },
)

defs = build_definitions(
    Path(__file__).parent / "pipelines",
    key_prefix="distributed",  # the example location defines sales_medallion's keys already
    executor=celery_executor.configured(
        {
            "broker": {"env": "ODIBI_CELERY_BROKER"},
            "backend": {"env": "ODIBI_CELERY_BACKEND"},
            # A step is acknowledged when it is done, so a worker busy with a long (Spark) step
            # does not hold the next step back (Celery reserves one more task per busy process).
            "config_source": {"task_acks_late": True},
        }
    ),
    resources={"odibi_spark": spark},
)
