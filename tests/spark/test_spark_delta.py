"""Delta Lake through the Spark engine: overwrite, append, merge, versions, time travel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from odibi_dagster.engines.spark import SparkEngineContext

pytestmark = pytest.mark.spark


def _rows(df) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


def test_overwrite_append_merge_versions_and_time_travel(ctx: SparkEngineContext, tmp_path: Path) -> None:
    spark = ctx.spark
    target = str(tmp_path / "delta" / "customers")
    v0 = spark.createDataFrame([(1, "ann", 10.0), (2, "bob", 20.0)], "id long, name string, score double")

    info = ctx.write(v0, target, source_type="delta", mode="overwrite")
    assert (info.format, info.version, info.rows, info.uri) == ("delta", 0, 2, target)
    assert info.extra["operation"] == "WRITE"

    more = spark.createDataFrame([(3, "cy", 30.0)], v0.schema)
    info = ctx.write(more, target, format="delta", mode="append")
    assert (info.version, info.rows) == (1, 1)

    upserts = spark.createDataFrame([(2, "bob", 99.0), (4, "dee", 40.0)], v0.schema)
    info = ctx.write(upserts, target, format="delta", mode="merge", merge_keys=["id"])
    assert info.version == 2 and info.rows == 2
    assert info.extra["operation"] == "MERGE"
    assert info.extra["numTargetRowsInserted"] == 1 and info.extra["numTargetRowsUpdated"] == 1

    # the format is detected from _delta_log; the latest version is the merged table
    assert _rows(ctx.read(target)) == [(1, "ann", 10.0), (2, "bob", 99.0), (3, "cy", 30.0), (4, "dee", 40.0)]
    # time travel by version, in both ODIBI and Spark spelling
    assert _rows(ctx.read(target, version=0)) == [(1, "ann", 10.0), (2, "bob", 20.0)]
    assert ctx.read(target, format="delta", versionAsOf=1).count() == 3

    # overwrite replaces the content and bumps the version
    info = ctx.write(more, target, format="delta")
    assert (info.version, info.rows) == (3, 1)
    assert ctx.read(target).count() == 1


def test_time_travel_by_timestamp(ctx: SparkEngineContext, tmp_path: Path) -> None:
    target = str(tmp_path / "tt")
    ctx.write(ctx.spark.range(3), target, format="delta")
    time.sleep(1.2)
    ts = ctx.spark.sql("SELECT date_format(current_timestamp(), 'yyyy-MM-dd HH:mm:ss')").first()[0]
    time.sleep(1.2)
    ctx.write(ctx.spark.range(10), target, format="delta", mode="append")
    assert ctx.read(target, timestamp=ts).count() == 3
    assert ctx.read(target, timestampAsOf=ts).count() == 3
    assert ctx.read(target).count() == 13


def test_merge_creates_missing_table_and_supports_composite_keys(ctx: SparkEngineContext, tmp_path: Path) -> None:
    target = str(tmp_path / "daily")
    first = ctx.spark.createDataFrame(
        [("2024-01-01", "north", 1), ("2024-01-01", "south", 2)], "day string, store string, n long"
    )
    info = ctx.write(first, target, format="delta", mode="merge", keys="day, store")
    assert info.version == 0 and info.rows == 2
    second = ctx.spark.createDataFrame([("2024-01-01", "north", 5), ("2024-01-02", "north", 1)], first.schema)
    info = ctx.write(second, target, format="delta", mode="merge", keys=["day", "store"])
    assert info.version == 1
    assert _rows(ctx.read(target)) == [
        ("2024-01-01", "north", 5),
        ("2024-01-01", "south", 2),
        ("2024-01-02", "north", 1),
    ]


def test_merge_needs_keys(ctx: SparkEngineContext, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="merge_keys"):
        ctx.write(ctx.spark.range(1), str(tmp_path / "nokeys"), format="delta", mode="merge")


def test_partitioned_delta_and_schema_enforcement(ctx: SparkEngineContext, tmp_path: Path) -> None:
    target = str(tmp_path / "parted")
    df = ctx.spark.createDataFrame([(1, "a"), (2, "b")], "id long, part string")
    ctx.write(df, target, format="delta", partition_by="part")
    assert (Path(target) / "part=a").is_dir()
    wider = df.selectExpr("id", "part", "'x' AS extra")
    with pytest.raises(RuntimeError, match="cannot write"):
        ctx.write(wider, target, format="delta", mode="append")
    info = ctx.write(wider, target, format="delta", mode="append", mergeSchema=True)
    assert info.version == 1 and ctx.read(target).columns == ["id", "part", "extra"]
