"""A real standalone cluster: master + one worker on 127.0.0.1 started from the pyspark install,
and a job run through SparkEngineContext on it (in a subprocess: one JVM hosts one SparkContext,
and the test session's local one is already up)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port, get_json, spark_cluster

pytestmark = [pytest.mark.spark, pytest.mark.slow]

HOST = "127.0.0.1"


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with spark_cluster(tmp_path) as cluster:
        yield {"url": cluster.url, "master_json": cluster.master_json, "env": cluster.env, "logs": tmp_path}


def _wait_for(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:  # the master is busy
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} within {timeout}s")


DRIVER_SCRIPT = textwrap.dedent(
    """
    import json, sys, urllib.request
    from odibi_dagster.engines.base import DatasetRef
    from odibi_dagster.engines.spark import SparkEngine

    master, work, ui_port = sys.argv[1], sys.argv[2], sys.argv[3]
    engine = SparkEngine(master=master, app_name="odibi-cluster-test", spark_conf={
        "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
        "spark.executor.memory": "512m", "spark.cores.max": "1", "spark.ui.port": ui_port,
        "spark.sql.shuffle.partitions": "2", "spark.databricks.delta.snapshotPartitions": "2",
        "spark.pyspark.python": sys.executable})
    ctx = engine.context()
    with open(work + "/sales.csv", "w") as fh:
        fh.write("sale_id,store,amount\\n")
        for i in range(1000):
            fh.write(f"{i},s{i % 4},{'oops' if i % 10 == 0 else i % 50 - 5}\\n")
    ctx.register_temp("bronze", ctx.read(work + "/sales.csv", inferSchema=False))  # one job less
    silver = ctx.execute_sql("SELECT sale_id, store, CAST(amount AS DOUBLE) AS amount FROM bronze "
                             "WHERE TRY_CAST(amount AS DOUBLE) > 0")
    info = ctx.persist(silver, work + "/silver", "delta")
    ctx.register_temp("silver", DatasetRef(paths=(work + "/silver",), format="delta"))
    gold = ctx.execute_sql("SELECT store, COUNT(*) AS n FROM silver GROUP BY store ORDER BY store")
    rows = [tuple(r) for r in gold.collect()]
    sc = ctx.spark.sparkContext
    app_id = sc.applicationId
    executors = json.load(urllib.request.urlopen(
        f"http://127.0.0.1:{ui_port}/api/v1/applications/{app_id}/executors", timeout=10))
    print("RESULT " + json.dumps({"app_id": app_id, "master": sc.master, "rows": rows,
                                  "silver_rows": info.rows, "version": info.version,
                                  "executors": executors}))
    engine.stop()
    """
)


def test_job_runs_on_a_standalone_cluster(spark, standalone_cluster: dict[str, Any], tmp_path: Path) -> None:
    # `spark` fixture: the test session's Ivy resolution has cached the Delta jars already
    work = tmp_path / "job"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER_SCRIPT, standalone_cluster["url"], str(work), str(free_port(HOST))],
        env=standalone_cluster["env"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["master"] == standalone_cluster["url"]
    expected_silver = sum(1 for i in range(1000) if i % 10 and i % 50 - 5 > 0)
    assert result["silver_rows"] == expected_silver and result["version"] == 0
    assert sum(n for _, n in result["rows"]) == expected_silver
    workers = [e for e in result["executors"] if e["id"] != "driver"]
    assert workers and sum(e["totalTasks"] for e in workers) > 0, result["executors"]

    # the master saw the application run and finish
    def completed() -> list[dict[str, Any]]:
        return [a for a in get_json(standalone_cluster["master_json"])["completedapps"] if a["id"] == result["app_id"]]

    apps = _wait_for(completed, 30, "application completed")
    assert apps[0]["state"] == "FINISHED"
