"""The same configs give the same results on pandas+DuckDB and on Spark (issue 6, parity)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from odibi_dagster import build_definitions
from odibi_dagster.engines.spark import SparkEngine

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "definitions"
# Sums of doubles are added in a different order by each engine.
REL_TOL = 1e-9


def _medallion(tmp: Path, engine: str) -> Path:
    folder = tmp / engine
    folder.mkdir()
    text = (EXAMPLES / "pipelines" / "sales_medallion.yaml").read_text()
    text = text.replace("engine: pandas", f"engine: {engine}").replace(
        "pipeline: sales_medallion", f"pipeline: medallion_{engine}"
    )
    text = text.replace("../data/", f"{EXAMPLES / 'data'}/")
    (folder / "medallion.yaml").write_text(text)
    shutil.copy(EXAMPLES / "pipelines" / "medallion_functions.py", folder / "medallion_functions.py")
    return folder / "medallion.yaml"


def _read_any(path: Path) -> pd.DataFrame:
    # Spark writes a folder of part files where pandas writes one file.
    target = f"{path}/*.csv" if path.is_dir() else str(path)
    return duckdb.sql(f"SELECT * FROM read_csv('{target}', header=true)").df()


def _run(cfg: Path, job: str, spark_engine: SparkEngine) -> dg.ExecuteInProcessResult:
    defs = build_definitions(cfg, resources={"odibi_spark": spark_engine})
    result = defs.resolve_job_def(job).execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    assert result.success, failures
    return result


def test_medallion_gives_the_same_gold_rows_on_both_engines(tmp_path: Path, spark_engine: SparkEngine) -> None:
    results = {}
    for engine in ("pandas", "spark"):
        cfg = _medallion(tmp_path, engine)
        result = _run(cfg, f"medallion_{engine}", spark_engine)
        rows = {
            m.materialization.asset_key.path[-1]: m.materialization.metadata["dagster/row_count"].value
            for m in result.get_asset_materialization_events()
        }
        gold = _read_any(cfg.parent.parent / "output" / "medallion" / "gold_daily_sales.csv")
        results[engine] = (rows, gold)
        shutil.rmtree(cfg.parent.parent / "output")
    (pandas_rows, pandas_gold), (spark_rows, spark_gold) = results["pandas"], results["spark"]
    assert pandas_rows == spark_rows
    assert pandas_rows["gold_daily_sales"] == 56
    key = ["sale_date", "store"]
    a = pandas_gold.sort_values(key).reset_index(drop=True)
    b = spark_gold.sort_values(key).reset_index(drop=True)[list(a.columns)]
    assert list(a.columns) == ["sale_date", "store", "revenue", "sales", "items", "avg_ticket"]
    pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=REL_TOL)


def test_schema_metadata_is_identical_on_both_engines(tmp_path: Path, spark_engine: SparkEngine) -> None:
    schemas = {}
    for engine in ("pandas", "spark"):
        cfg = _medallion(tmp_path, engine)
        result = _run(cfg, f"medallion_{engine}", spark_engine)
        mat = next(
            m.materialization
            for m in result.get_asset_materialization_events()
            if m.materialization.asset_key.path[-1] == "silver_sales"
        )
        cols = mat.metadata["dagster/column_schema"].value.columns
        schemas[engine] = [(c.name, c.type) for c in cols]
        assert "dagster/column_lineage" in mat.metadata
        assert mat.metadata["odibi/sample"].value.count("\n") >= 6  # header, separator, 5 rows
        shutil.rmtree(cfg.parent.parent / "output")
    assert schemas["pandas"] == schemas["spark"]


SEED_EXAMPLE_2 = [
    {
        "layer": "ingest",
        "name": "ingest_transactions",
        "type": "config_op",
        "engine": "spark",
        "value": "data/raw/transactions.csv",
        "outputs": {"data": "bronze_transactions"},
    },
    {
        "layer": "store",
        "name": "save_bronze",
        "type": "config_op",
        "engine": "spark",
        "value": "delta/bronze/transactions",
        "inputs": {"data": "bronze_transactions"},
        "params": {"mode": "overwrite", "source_type": "delta"},
    },
    {
        "layer": "transform",
        "name": "clean_transactions",
        "type": "sql",
        "engine": "spark",
        "value": "\n            SELECT \n                transaction_id,\n"
        "                CAST(amount AS DOUBLE) as amount,\n"
        "                to_date(transaction_date, 'yyyy-MM-dd') as transaction_date,\n"
        "                customer_id\n            FROM bronze\n"
        "            WHERE amount IS NOT NULL AND amount > 0\n        ",
        "inputs": {"bronze": "bronze_transactions"},
        "outputs": {"data": "silver_transactions"},
    },
    {
        "layer": "store",
        "name": "save_silver",
        "type": "config_op",
        "engine": "spark",
        "value": "delta/silver/transactions",
        "inputs": {"data": "silver_transactions"},
        "params": {"mode": "overwrite", "source_type": "delta"},
    },
    {
        "layer": "transform",
        "name": "aggregate_daily",
        "type": "sql",
        "engine": "spark",
        "value": "\n            SELECT \n                transaction_date,\n                customer_id,\n"
        "                COUNT(*) as transaction_count,\n                SUM(amount) as total_amount,\n"
        "                AVG(amount) as avg_amount\n            FROM silver\n"
        "            GROUP BY transaction_date, customer_id\n        ",
        "inputs": {"silver": "silver_transactions"},
        "outputs": {"data": "gold_daily_summary"},
    },
    {
        "layer": "publish",
        "name": "publish_gold",
        "type": "config_op",
        "engine": "spark",
        "value": "delta/gold/daily_summary",
        "inputs": {"data": "gold_daily_summary"},
        "params": {"mode": "append", "source_type": "delta"},
    },
]


def test_seed_example_2_delta_medallion_runs_as_written(tmp_path: Path, spark_engine: SparkEngine) -> None:
    (tmp_path / "data" / "raw").mkdir(parents=True)
    rows = ["transaction_id,amount,transaction_date,customer_id"]
    for i in range(1, 41):
        amount = "" if i % 10 == 0 else str(-5 if i % 7 == 0 else i * 1.5)
        rows.append(f"{i},{amount},2024-01-{(i % 3) + 1:02d},c{i % 4}")
    (tmp_path / "data" / "raw" / "transactions.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "example2.json"
    cfg.write_text(json.dumps(SEED_EXAMPLE_2))

    versions = []
    for _ in range(2):  # publish appends: the second run adds a Delta version
        result = _run(cfg, "example2", spark_engine)
        md = {
            m.materialization.asset_key.path[-1]: m.materialization.metadata
            for m in result.get_asset_materialization_events()
        }
        versions.append(md["publish_gold"]["odibi/delta_version"].value)
        assert md["save_silver"]["odibi/delta_version"].value >= 0
    assert versions[1] == versions[0] + 1

    from deltalake import DeltaTable

    silver = DeltaTable(str(tmp_path / "delta" / "silver" / "transactions")).to_pandas()
    assert len(silver) == 40 - 4 - 5  # 4 empty amounts (i=10,20,30,40), 5 negative (i=7,14,21,28,35)
    gold = DeltaTable(str(tmp_path / "delta" / "gold" / "daily_summary")).to_pandas()
    assert (
        len(gold)
        == 2
        * duckdb.sql("SELECT COUNT(*) FROM (SELECT DISTINCT transaction_date, customer_id FROM silver)").fetchall()[0][
            0
        ]
    )
    assert set(gold.columns) == {"transaction_date", "customer_id", "transaction_count", "total_amount", "avg_amount"}


@pytest.fixture(autouse=True)
def _no_leftover_views(spark_engine: SparkEngine):
    yield
    spark = spark_engine.spark_session
    assert not [t for t in spark.catalog.listTables() if t.isTemporary], "a step left temp views behind"


def test_reference_ingest_gives_the_same_gold_rows_on_both_engines(tmp_path: Path, spark_engine: SparkEngine) -> None:
    """``ingest_mode: reference``: no bronze copy on either engine, the same gold as a copying run;
    Spark re-reads the CSV with the schema it inferred at ingest instead of inferring again."""
    from pyspark.sql.types import StructType

    from odibi_dagster.engines.base import DatasetRef
    from odibi_dagster.engines.spark import SparkEngineContext

    golds = {}
    for engine in ("pandas", "spark"):
        cfg = _medallion(tmp_path, engine)
        cfg.write_text(cfg.read_text().replace("steps:\n", "ingest_mode: reference\nsteps:\n", 1))
        _run(cfg, f"medallion_{engine}", spark_engine)
        bronze = cfg.parent / ".odibi" / "datasets" / f"medallion_{engine}" / "bronze_sales"
        assert [p.name for p in bronze.iterdir()] == ["data.source.json"]
        manifest = json.loads((bronze / "data.source.json").read_text())
        assert manifest["engine"] == engine and manifest["source"] == str(EXAMPLES / "data" / "raw" / "sales.csv")
        golds[engine] = _read_any(cfg.parent.parent / "output" / "medallion" / "gold_daily_sales.csv")
        shutil.rmtree(cfg.parent.parent / "output")
        if engine == "spark":
            pinned = StructType.fromJson(json.loads(manifest["read_schema"]))
            ctx = SparkEngineContext(spark_engine.spark_session)
            loaded = ctx.load(DatasetRef((str(bronze / "data.source.json"),), "source"))
            assert loaded.schema == pinned and loaded.count() == manifest["row_count"]
        else:
            assert manifest["read_schema"] is None  # DuckDB sniffs a sample: nothing to pin
    key = ["sale_date", "store"]
    a = golds["pandas"].sort_values(key).reset_index(drop=True)
    b = golds["spark"].sort_values(key).reset_index(drop=True)[list(a.columns)]
    assert len(a) == 56
    pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=REL_TOL)
