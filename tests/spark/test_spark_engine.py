"""The SparkEngine resource: conf, jar resolution and caching, session ownership, Dagster runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pyspark
import pytest

from odibi_dagster.engines.spark import SparkEngine, delta_package
from odibi_dagster.engines.spark import jars as spark_jars
from odibi_dagster.observe.redact import Redactor

pytestmark = pytest.mark.spark


def test_session_conf_has_delta_avro_and_a_stable_ivy_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ODIBI_SPARK_IVY", str(tmp_path / "ivy"))
    monkeypatch.setattr(spark_jars, "_published_versions", lambda *a: None)  # no network in this test
    engine = SparkEngine(
        master="local[2]",
        spark_conf={
            "spark.sql.extensions": "my.Ext",
            "spark.jars.packages": "com.example:extra:1.0",
            "spark.jars.excludes": "com.example:unwanted",
        },
        packages=["avro", "sqlite", "org.example:thing:2.0"],
    )
    conf = engine.session_conf()
    assert conf["spark.master"] == "local[2]" and conf["spark.app.name"] == "odibi"
    assert conf["spark.jars.ivy"] == str(tmp_path / "ivy")
    assert conf["spark.sql.extensions"] == "my.Ext,io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    packages = conf["spark.jars.packages"].split(",")
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    assert packages[0].startswith(f"io.delta:delta-spark_{spark_minor}_2.13:")
    assert packages[1] == f"org.apache.spark:spark-avro_2.13:{pyspark.__version__}"  # nothing cached
    assert packages[2].startswith("org.xerial:sqlite-jdbc:")
    assert packages[3:] == ["org.example:thing:2.0", "com.example:extra:1.0"]
    assert "org.apache.parquet:*" in conf["spark.jars.excludes"]
    assert conf["spark.jars.excludes"].endswith("com.example:unwanted")

    plain = SparkEngine(delta=False).session_conf()
    assert "spark.jars.packages" not in plain and "spark.sql.extensions" not in plain
    with pytest.raises(ValueError, match="not group:artifact:version"):
        SparkEngine(packages=["nonsense"]).resolved_packages()


def test_jar_versions_fall_back_to_the_cache_then_to_maven_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ivy = tmp_path / "ivy"
    module = ivy / "cache" / "io.delta" / "delta-spark_4.0_2.13"
    (module / "jars").mkdir(parents=True)
    (module / "ivy-4.4.0.xml").write_text("<ivy-module/>")
    (module / "jars" / "delta-spark_4.0_2.13-4.4.0.jar").write_bytes(b"")

    def no_network(*args):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(spark_jars, "_published_versions", no_network)
    # PyPI has 4.4.1, Maven Central only 4.4.0: the cached 4.4.0 is used, offline
    assert spark_jars._resolve_version("io.delta", "delta-spark_4.0_2.13", "4.4.1", ivy) == "4.4.0"
    monkeypatch.setattr(spark_jars, "_published_versions", lambda *a: frozenset({"4.0.1", "4.0.2", "4.1.1"}))
    assert spark_jars._resolve_version("org.apache.spark", "spark-avro_2.13", "4.0.5", ivy) == "4.0.2"
    monkeypatch.setattr(spark_jars, "_published_versions", lambda *a: None)
    assert spark_jars._resolve_version("org.apache.spark", "spark-avro_2.13", "4.0.5", ivy) == "4.0.5"
    assert delta_package(ivy).startswith("io.delta:delta-spark_")


def test_redact() -> None:
    # The engine masks its errors with the one rule of observe.redact (see SparkEngineContext.redact).
    text = "failed: jdbc:postgresql://h/db?user=a&password=hunter2 with hunter3; pwd=x1;"
    assert Redactor(["hunter3", None, ""]).redact_text(text) == (
        "failed: jdbc:postgresql://h/db?user=a&password=*** with ***; pwd=***;"
    )


def test_borrowed_session_is_never_stopped(spark, spark_engine: SparkEngine) -> None:
    engine = SparkEngine(master="local[2]", spark_conf={"spark.sql.shuffle.partitions": "3"})
    assert engine.spark_session.sparkContext is spark.sparkContext
    assert not engine.owns_session
    assert spark.conf.get("spark.sql.shuffle.partitions") == "3"  # runtime conf applied
    spark.conf.set("spark.sql.shuffle.partitions", "2")
    engine.stop()
    assert spark.sparkContext._jsc is not None
    assert spark.range(3).count() == 3


def test_runs_in_dagster_with_the_resource(spark, spark_engine: SparkEngine, tmp_path: Path) -> None:
    src = tmp_path / "sales.csv"
    src.write_text("sale_id,amount\n1,5\n2,-1\n3,7\n")
    out = str(tmp_path / "silver")

    @dg.asset
    def silver(spark: SparkEngine) -> dg.MaterializeResult:
        ctx = spark.context()
        try:
            ctx.register_temp("bronze", ctx.read(str(src)))
            info = ctx.write(ctx.execute_sql("SELECT * FROM bronze WHERE amount > 0"), out, format="delta")
        finally:
            ctx.close()
        return dg.MaterializeResult(metadata={"dagster/row_count": info.rows, "version": info.version})

    result = dg.materialize([silver], resources={"spark": spark_engine})
    assert result.success
    mat = result.asset_materializations_for_node("silver")[0]
    assert mat.metadata["dagster/row_count"].value == 2
    assert spark.sparkContext._jsc is not None  # teardown left the shared session running


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pyspark import SparkContext
    from odibi_dagster.engines.spark import SparkEngine

    out = sys.argv[1]
    engine = SparkEngine(master="local[1]", packages=["avro"],
                         spark_conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1"})
    ctx = engine.context()
    info = ctx.write(ctx.spark.range(4), out + "/d", format="delta")
    ctx.write(ctx.spark.range(2), out + "/a", format="avro")
    result = {"owns": engine.owns_session, "version": info.version, "rows": info.rows,
              "avro": ctx.read(out + "/a", format="avro").count(),
              "packages": ctx.spark.sparkContext.getConf().get("spark.jars.packages")}
    engine.stop()
    result["stopped"] = SparkContext._active_spark_context is None
    print("RESULT " + json.dumps(result))
    """
)


def test_second_start_is_offline_and_an_owned_session_is_stopped(spark, tmp_path: Path) -> None:
    """The test session resolved the jars into the Ivy cache; a new JVM starts with no network."""
    dead = "127.0.0.1"
    env = dict(os.environ)
    env["JAVA_TOOL_OPTIONS"] = (
        f"-Dhttp.proxyHost={dead} -Dhttp.proxyPort=9 -Dhttps.proxyHost={dead} -Dhttps.proxyPort=9"
    )
    env["https_proxy"] = env["HTTPS_PROXY"] = f"http://{dead}:9"
    env["http_proxy"] = env["HTTP_PROXY"] = f"http://{dead}:9"
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["owns"] and result["stopped"]
    assert (result["version"], result["rows"], result["avro"]) == (0, 4, 2)
    assert "io.delta:delta-spark" in result["packages"] and "spark-avro" in result["packages"]
