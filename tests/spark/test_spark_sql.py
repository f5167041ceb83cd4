"""SQL over temp views, snapshots, samples, and DatasetRef handoff between steps and engines."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable as RustDeltaTable

from odibi_dagster.engines.base import DatasetRef, EngineContext
from odibi_dagster.engines.spark import SparkEngineContext, arrow_type_string, persist_frame

pytestmark = pytest.mark.spark


def test_context_implements_the_contract(ctx: SparkEngineContext) -> None:
    assert isinstance(ctx, EngineContext)
    assert ctx.engine == "spark"


def test_sql_over_registered_temp_views(ctx: SparkEngineContext) -> None:
    bronze = ctx.spark.createDataFrame(
        [(1, "10.5", "north"), (2, "oops", "south"), (3, "-1", "north"), (4, "4", "north")],
        "sale_id long, amount string, store string",
    )
    ctx.register_temp("bronze", bronze)
    silver = ctx.execute_sql(
        "SELECT sale_id, CAST(amount AS DOUBLE) AS amount, store FROM bronze WHERE TRY_CAST(amount AS DOUBLE) > 0"
    )
    ctx.register_temp("silver", silver)
    gold = ctx.execute_sql("SELECT store, COUNT(*) AS n, SUM(amount) AS total FROM silver GROUP BY store")
    assert [tuple(r) for r in gold.collect()] == [("north", 2, 14.5)]
    # pandas and Arrow inputs register too
    ctx.register_temp("p", pd.DataFrame({"x": [1, 2, 3]}))
    ctx.register_temp("a", pa.table({"y": [10, 20]}))
    assert ctx.execute_sql("SELECT SUM(x) + (SELECT SUM(y) FROM a) FROM p").first()[0] == 36
    ctx.close()
    assert not {"bronze", "silver", "p", "a"} & {t.name for t in ctx.spark.catalog.listTables()}


def test_collect_sample_and_to_pandas(ctx: SparkEngineContext) -> None:
    df = ctx.spark.range(100)
    sample = ctx.collect_sample(df, n=3)
    assert isinstance(sample, pd.DataFrame) and len(sample) == 3
    assert len(ctx.to_pandas(df)) == 100


def test_snapshot_types_match_arrow_type_strings(ctx: SparkEngineContext, tmp_path: Path) -> None:
    # what the pandas engine reports for this data are the Arrow types of the table
    table = pa.table(
        {
            "i": pa.array([1, 2], pa.int64()),
            "small": pa.array([1, 2], pa.int32()),
            "f": pa.array([1.5, None], pa.float64()),
            "s": pa.array(["a", None], pa.string()),
            "d": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date32()),
            "ts": pa.array([dt.datetime(2024, 1, 1, 1), None], pa.timestamp("us")),
            "b": pa.array([True, False], pa.bool_()),
            "dec": pa.array([decimal.Decimal("1.25"), None], pa.decimal128(10, 2)),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    snap = ctx.snapshot(ctx.read(str(tmp_path / "typed.parquet")), sample_rows=2)
    expected = [(f.name, str(f.type)) for f in table.schema]
    expected[1] = ("small", "int64")  # all integer widths show as int64, as pandas does for CSV ints
    assert list(snap.schema) == expected
    assert snap.row_count == 2 and snap.columns == table.column_names
    assert snap.sample is not None and len(snap.sample) == 2
    # CSV inference (Spark: int) reports the same as the pandas engine (int64)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c\n1,2.5,x\n")
    assert ctx.snapshot(ctx.read(str(csv)), sample_rows=0).schema == (
        ("a", "int64"),
        ("b", "double"),
        ("c", "string"),
    )
    assert ctx.snapshot(ctx.read(str(csv)), sample_rows=0).sample is None


def test_nested_type_strings(spark) -> None:
    df = spark.sql("SELECT array(1, 2) AS a, map('k', 1.0D) AS m, named_struct('x', 1, 'y', 'z') AS s")
    assert [arrow_type_string(f.dataType) for f in df.schema.fields] == [
        "list<item: int64>",
        "map<string, double>",
        "struct<x: int64, y: string>",
    ]


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_persist_handoff_readable_by_spark_and_the_pandas_side(
    ctx: SparkEngineContext, tmp_path: Path, fmt: str
) -> None:
    df = ctx.spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], "id long, v string")
    path = str(tmp_path / "datasets" / "silver")
    info = ctx.persist(df, path, fmt)
    assert info.rows == 3 and info.format == fmt
    assert (info.version == 0) if fmt == "delta" else (info.version is None)

    # a re-run replaces the dataset, with a different schema if the step changed
    info = ctx.persist(df.selectExpr("id", "v", "id * 2 AS twice"), path, fmt)
    if fmt == "delta":
        assert info.version == 1
    assert not [p for p in (tmp_path / "datasets").iterdir() if p.name != "silver"]

    ref = DatasetRef(paths=(path,), format=fmt, asset_key=("p", "silver"))
    ctx.register_temp("silver", ref)  # lazily loaded
    assert ctx.execute_sql("SELECT SUM(twice) FROM silver").first()[0] == 12
    assert ctx.load(ref).count() == 3

    # the pandas side reads what Spark persisted
    table = RustDeltaTable(path).to_pyarrow_table() if fmt == "delta" else pq.read_table(path)
    assert sorted(table.column("twice").to_pylist()) == [2, 4, 6]


def test_parquet_written_by_pyarrow_is_read_by_spark(ctx: SparkEngineContext, tmp_path: Path) -> None:
    part1 = tmp_path / "ds" / "2024-01-01.parquet"
    part2 = tmp_path / "ds" / "2024-01-02.parquet"
    part1.parent.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "amount": [1.0, 2.0]}), part1)
    pq.write_table(pa.table({"id": [3], "amount": [3.0]}), part2)
    ref = DatasetRef(paths=(str(part1), str(part2)), format="parquet", partition_keys=("a", "b"))
    ctx.register_temp("bronze", ref)
    assert ctx.execute_sql("SELECT COUNT(*), SUM(amount) FROM bronze").first() == (3, 6.0)
    assert ctx.snapshot(ref).schema == (("id", "int64"), ("amount", "double"))


def test_delta_written_by_deltalake_is_read_by_spark(ctx: SparkEngineContext, tmp_path: Path) -> None:
    from deltalake import write_deltalake

    path = tmp_path / "rs_delta"
    write_deltalake(str(path), pa.table({"id": [1, 2]}))
    write_deltalake(str(path), pa.table({"id": [3]}), mode="append")
    assert ctx.load(DatasetRef(paths=(str(path),), format="delta")).count() == 3
    assert ctx.read(str(path), version=0).count() == 2


def test_persist_frame_module_function(spark, tmp_path: Path) -> None:
    info = persist_frame(spark.range(5), str(tmp_path / "pf"))
    assert (info.format, info.rows, info.version) == ("delta", 5, 0)
    info = persist_frame(spark.range(7), str(tmp_path / "pf_parquet"), format="parquet")
    assert info.rows == 7 and pq.read_table(tmp_path / "pf_parquet").num_rows == 7


def test_each_step_context_has_its_own_temp_views(spark_engine, spark) -> None:
    """Two steps running at once in one process both register ``bronze``: each queries its own."""
    import threading

    barrier = threading.Barrier(2)
    seen: dict[int, list[int]] = {}

    def step(value: int) -> None:
        context = spark_engine.context()
        try:
            context.register_temp("bronze", context.spark.createDataFrame([(value,)], "v int"))
            barrier.wait(timeout=60)  # both views exist before either query runs
            seen[value] = [r.v for r in context.execute_sql("SELECT v FROM bronze").collect()]
        finally:
            context.close()

    threads = [threading.Thread(target=step, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert seen == {1: [1], 2: [2]}
    # a frame made in another session (here the shared one) can still be registered and queried
    context = spark_engine.context()
    try:
        context.register_temp("outside", spark.createDataFrame([(7,)], "v int"))
        assert [r.v for r in context.execute_sql("SELECT v FROM outside").collect()] == [7]
    finally:
        context.close()
    assert not [t for t in spark.catalog.listTables("global_temp") if t.name.startswith("odibi_")]


def test_step_sessions_keep_the_resources_runtime_settings(spark) -> None:
    from odibi_dagster.engines.spark import SparkEngine

    original = spark.conf.get("spark.sql.shuffle.partitions")
    engine = SparkEngine(master="local[2]", spark_conf={"spark.sql.shuffle.partitions": "5"})
    try:
        context = engine.context()  # borrows the running session, on a child session of its own
        try:
            assert context.spark is not spark
            assert context.spark.conf.get("spark.sql.shuffle.partitions") == "5"
        finally:
            context.close()
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", original)
        engine.stop()
