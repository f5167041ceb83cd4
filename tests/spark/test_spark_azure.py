"""Spark pipelines on Azure Blob Storage against a real Azurite on 127.0.0.1, in the shared session.

hadoop-azure's WASB driver reaches the emulator's blob endpoint: the project's ``abfs://container/path``
becomes ``wasb://container@devstoreaccount1.blob.core.windows.net/path`` and the JVM sends those
plain-HTTP requests through Azurite as its proxy (see ``odibi_dagster.engines.spark.azure``). The
pipeline ingests a CSV blob, transforms it in Spark SQL, stores Delta (and a CSV through a
``wasb://`` URL) on the blob store, with its datasets as Delta tables under an ``abfs://`` work
dir; a second pipeline reads the Delta table back, and a pandas step reads a Spark dataset.
The account key (Azurite's well-known one, standing in for a real key) appears nowhere Spark,
Dagster or odibi record anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._serdes import serialize_value
from support import AZURITE_ACCOUNT_KEY, new_container

from odibi_dagster import build_definitions
from odibi_dagster.engines import paths
from odibi_dagster.engines.spark import SparkEngine
from odibi_dagster.engines.spark import azure as spark_azure

pytestmark = [pytest.mark.spark]

ACCOUNT = "devstoreaccount1"
SALES = "id,store,amount\n1,north,50\n2,south,150\n3,north,300\n4,east,101\n5,south,250\n"
EXPECTED = {"east": 101.0, "north": 300.0, "south": 400.0}  # revenue of sales over 100


@pytest.fixture
def container(azurite: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh container with the sales CSV; the pandas and Spark engines find the account in the environment."""
    name = new_container(azurite, monkeypatch)
    paths.fs_for(f"abfs://{name}").pipe(f"abfs://{name}/in/sales.csv", SALES.encode())
    return name


def _configs(tmp: Path, c: str) -> list[Path]:
    write = {
        "pipeline": "az_spark",
        "engine": "spark",
        "steps": [
            {"layer": "ingest", "name": "read", "value": f"abfs://{c}/in/sales.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "revenue",
                "type": "sql",
                "value": "SELECT store, SUM(amount) AS revenue, COUNT(*) AS sales FROM raw "
                "WHERE amount > 100 GROUP BY store",
                "inputs": {"raw": "raw"},
                "outputs": {"data": "revenue"},
            },
            {
                "layer": "store",
                "name": "save_delta",
                "value": f"abfs://{c}/out/revenue_delta",
                "params": {"format": "delta"},
                "inputs": {"data": "revenue"},
            },
            {
                "layer": "store",
                "name": "save_csv",  # the Hadoop form of a blob URL works as written
                "value": f"wasbs://{c}@{ACCOUNT}.blob.core.windows.net/out/revenue.csv",
                "params": {"single_file": True},
                "inputs": {"data": "revenue"},
            },
            {
                "layer": "transform",
                "name": "on_pandas",  # a pandas step reads the Spark step's Delta dataset on the blob store
                "engine": "pandas",
                "type": "sql",
                "value": "SELECT store, revenue FROM revenue ORDER BY store",
                "inputs": {"revenue": "revenue"},
                "outputs": {"data": "revenue_pandas"},
            },
        ],
    }
    back = {
        "pipeline": "az_spark_back",
        "engine": "spark",
        "steps": [
            {
                "layer": "ingest",
                "name": "read_back",
                "value": f"abfs://{c}/out/revenue_delta",
                "params": {"format": "delta", "version": 0},
                "outputs": {"data": "revenue_back"},
            },
        ],
    }
    out = []
    for config in (write, back):
        path = tmp / f"{config['pipeline']}.json"
        path.write_text(json.dumps(config))
        out.append(path)
    return out


def _run(defs: dg.Definitions, job: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
    failures = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    assert result.success, "\n".join(failures)
    return result


def _delta_frame(path: str) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(path, storage_options=paths.delta_storage_options(path)).to_pandas()


def _revenue(frame: pd.DataFrame) -> dict[str, float]:
    return {str(r.store): float(r.revenue) for r in frame.itertuples()}


def test_a_spark_pipeline_reads_transforms_and_stores_delta_on_blob_storage(
    spark, spark_engine: SparkEngine, spark_events: Path, container: str, tmp_path: Path
) -> None:
    c = container
    base = f"abfs://{c}/work"
    defs = build_definitions(*_configs(tmp_path, c), base_dir=base, resources={"odibi_spark": spark_engine})
    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(defs, "az_spark", instance)
        back = _run(defs, "az_spark_back", instance)
        dagster_log = "\n".join(serialize_value(e) for r in (result, back) for e in instance.all_logs(r.run_id))

    fs = paths.fs_for(base)
    # The Spark steps' datasets are Delta tables on the blob store; the pandas step's is Parquet.
    for dataset in ("raw", "revenue"):
        assert fs.exists(f"{base}/datasets/az_spark/{dataset}/data.delta/_delta_log/00000000000000000000.json")
    assert _revenue(_delta_frame(f"{base}/datasets/az_spark/revenue/data.delta")) == EXPECTED
    with fs.open(f"{base}/datasets/az_spark/revenue_pandas/data.parquet", "rb") as fh:
        assert _revenue(pd.read_parquet(fh)) == EXPECTED
    # The stored targets: a Delta table (version 0) and one CSV blob written through a wasbs:// URL.
    assert _revenue(_delta_frame(f"abfs://{c}/out/revenue_delta")) == EXPECTED
    with fs.open(f"abfs://{c}/out/revenue.csv", "r") as fh:
        assert _revenue(pd.read_csv(fh)) == EXPECTED
    # The second pipeline read the Delta table back through Spark (time travel to version 0).
    assert _revenue(_delta_frame(f"{base}/datasets/az_spark_back/revenue_back/data.delta")) == EXPECTED

    mats = {
        m.materialization.asset_key.path[-1]: m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    assert mats["save_delta"]["dagster/uri"].value == f"abfs://{c}/out/revenue_delta"
    assert mats["save_delta"]["odibi/delta_version"].value == 0
    assert mats["revenue"]["dagster/row_count"].value == 3
    assert mats["revenue"]["dagster/uri"].value == f"{base}/datasets/az_spark/revenue/data.delta"

    _assert_key_recorded_nowhere(spark, spark_events, fs, base, [result.run_id, back.run_id], dagster_log, mats)


def _assert_key_recorded_nowhere(
    spark, events: Path, fs, base: str, run_ids: list[str], dagster_log: str, mats
) -> None:
    key = AZURITE_ACCOUNT_KEY
    setting = f"fs.azure.account.key.{ACCOUNT}.blob.core.windows.net"
    # The key is set where hadoop-azure reads it (the Hadoop configuration, at run time) ...
    assert spark._jsc.hadoopConfiguration().get(setting) == key
    # ... and never in the Spark conf the session started with, which Spark logs.
    assert not [k for k, v in spark.sparkContext.getConf().getAll() if key in v]
    # Spark writes its Hadoop configuration into the event log whenever its environment changes
    # (adding a file does): the key's setting is there, redacted.
    marker = events.parent / "marker.txt"
    marker.write_text("x")
    spark.sparkContext.addFile(str(marker))
    spark.range(1).count()  # a job end flushes the event log
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()
    logged = "\n".join(p.read_text(errors="replace") for p in sorted(events.rglob("*")) if p.is_file())
    assert f'"{setting}":"*********(redacted)"' in logged
    assert key not in logged
    pattern = spark.sparkContext.getConf().get("spark.redaction.regex")
    assert spark._jvm.java.util.regex.Pattern.compile(pattern).matcher(setting).find()
    # Nor in Dagster's event log, the metadata, the story or the tracker files on the blob store.
    assert key not in dagster_log
    assert key not in json.dumps({k: str(v) for md in mats.values() for k, v in md.items()})
    for run_id in run_ids:
        stories = fs.find(f"{base}/stories")
        run_files = [p for p in stories if f"/{run_id}/" in p]
        assert any(p.endswith("story.html") for p in run_files) and any(p.endswith("tracker.json") for p in run_files)
        for p in run_files:
            assert key not in fs.cat(p).decode(errors="replace"), p


def test_urls_as_hadoop_azure_reaches_them(monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:41234/{ACCOUNT};"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", emulator)
    blob = f"{ACCOUNT}.blob.core.windows.net"
    assert spark_azure.hadoop_url("abfs://box/a/b.csv") == f"wasb://box@{blob}/a/b.csv"
    assert spark_azure.hadoop_url(f"abfss://box@{ACCOUNT}.dfs.core.windows.net/a") == f"wasb://box@{blob}/a"
    assert spark_azure.hadoop_url(f"wasbs://box@{blob}/a") == f"wasb://box@{blob}/a"
    assert spark_azure.hadoop_url("/local/a.csv") == "/local/a.csv"
    storage = spark_azure.current()
    assert storage is not None and storage.proxy_properties() == {
        "http.proxyHost": "127.0.0.1",
        "http.proxyPort": "41234",
    }
    # The executors of a cluster get the proxy with the session (no credentials in that conf).
    conf = spark_azure.session_settings("spark://127.0.0.1:7077", {"spark.executor.extraJavaOptions": "-Xss4m"})
    assert conf["spark.executor.extraJavaOptions"] == "-Xss4m -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=41234"
    assert AZURITE_ACCOUNT_KEY not in json.dumps(conf)

    # A real account: ADLS Gen2 over TLS at the dfs endpoint, the key for both endpoints.
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "prodacct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "c2VjcmV0LWtleQ==")
    assert (
        spark_azure.hadoop_url("abfs://lake/raw/x.parquet")
        == "abfss://lake@prodacct.dfs.core.windows.net/raw/x.parquet"
    )
    assert (
        spark_azure.hadoop_url("wasbs://lake@prodacct.blob.core.windows.net/x")
        == "wasbs://lake@prodacct.blob.core.windows.net/x"
    )
    storage = spark_azure.current()
    assert storage is not None and storage.proxy_properties() == {}
    assert storage.hadoop_conf() == {
        "fs.azure.account.key.prodacct.dfs.core.windows.net": "c2VjcmV0LWtleQ==",
        "fs.azure.account.key.prodacct.blob.core.windows.net": "c2VjcmV0LWtleQ==",
    }
    # A SAS token or a service principal instead of the key.
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", "?sv=2024&sig=abc")
    sas = spark_azure.current().hadoop_conf()
    assert sas["fs.azure.account.auth.type.prodacct.dfs.core.windows.net"] == "SAS"
    assert sas["fs.azure.sas.fixed.token.prodacct.dfs.core.windows.net"] == "sv=2024&sig=abc"
    monkeypatch.delenv("AZURE_STORAGE_SAS_TOKEN")
    for name, value in (("AZURE_CLIENT_ID", "app"), ("AZURE_CLIENT_SECRET", "s3cret"), ("AZURE_TENANT_ID", "t1")):
        monkeypatch.setenv(name, value)
    oauth = spark_azure.current().hadoop_conf()
    assert oauth["fs.azure.account.auth.type.prodacct.dfs.core.windows.net"] == "OAuth"
    assert oauth["fs.azure.account.oauth2.client.endpoint.prodacct.dfs.core.windows.net"] == (
        "https://login.microsoftonline.com/t1/oauth2/token"
    )
    # No account anywhere: a short-form URL cannot be placed.
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name)
    with pytest.raises(ValueError, match="storage account of abfs://lake/x"):
        spark_azure.hadoop_url("abfs://lake/x")


def test_session_conf_adds_hadoop_azure_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from odibi_dagster.engines.spark import jars as spark_jars

    monkeypatch.setattr(spark_jars, "_published_versions", lambda *a: None)  # no network in this test
    plain = SparkEngine().session_conf()
    assert "hadoop-azure" not in plain["spark.jars.packages"] and "spark.redaction.regex" not in plain
    hinted = SparkEngine().session_conf(azure=True)  # a step of a pipeline on Azure starts the session
    assert f"org.apache.hadoop:hadoop-azure:{spark_azure.hadoop_version()}" in hinted["spark.jars.packages"]
    assert "org.apache.httpcomponents:*" in hinted["spark.jars.excludes"]
    assert hinted["spark.redaction.regex"].endswith(r"|fs\.azure\.account\.key|fs\.azure\.sas")
    assert "hadoop-azure" not in SparkEngine(azure=False).session_conf(azure=True)["spark.jars.packages"]
    assert "hadoop-azure" in SparkEngine(azure=True).session_conf()["spark.jars.packages"]
