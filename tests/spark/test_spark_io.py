"""Readers and writers of the Spark engine: every file format round trips."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from odibi_dagster.engines.spark import SparkEngineContext

pytestmark = pytest.mark.spark


def _rows(df) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


@pytest.fixture
def sales(ctx: SparkEngineContext):
    return ctx.spark.createDataFrame(
        [
            (1, "north", 10.5, "2024-01-01"),
            (2, "south", 20.0, "2024-01-02"),
            (3, "north", 7.25, "2024-01-02"),
        ],
        "sale_id long, store string, amount double, sale_date string",
    )


def test_csv_read_defaults_header_and_infer_schema(ctx: SparkEngineContext, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("sale_id,store,amount\n1,north,10.5\n2,south,-3\n")
    df = ctx.read(str(src))  # format from the extension
    assert dict(df.dtypes) == {"sale_id": "bigint", "store": "string", "amount": "double"}  # pandas: int64
    assert _rows(df) == [(1, "north", 10.5), (2, "south", -3.0)]
    # ODIBI's source_type wins over the extension, and options pass through
    raw = ctx.read(str(src), source_type="csv", inferSchema=False)
    assert dict(raw.dtypes)["sale_id"] == "string"


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "avro"])
def test_file_format_round_trip(ctx: SparkEngineContext, sales, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"sales_{fmt}"
    info = ctx.write(sales, str(target), format=fmt)
    assert info.format == fmt and info.rows == 3 and info.version is None
    assert info.uri == str(target)
    back = ctx.read(str(target))  # a directory of part files: the format comes from their extension
    assert {tuple(r) for r in back.select("sale_id", "store").collect()} == {
        (1, "north"),
        (2, "south"),
        (3, "north"),
    }
    # append adds, overwrite replaces (atomically: no temp dirs left behind)
    ctx.write(sales, str(target), format=fmt, mode="append")
    assert ctx.read(str(target), format=fmt).count() == 6
    ctx.write(sales.limit(1), str(target), format=fmt, mode="overwrite")
    assert ctx.read(str(target), format=fmt).count() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_format_from_extension_and_single_file(ctx: SparkEngineContext, sales, tmp_path: Path) -> None:
    out = tmp_path / "out" / "sales.csv"
    info = ctx.write(sales, str(out), single_file=True)
    assert info.format == "csv" and out.is_file()
    assert pd.read_csv(out)["sale_id"].tolist() == [1, 2, 3]
    info = ctx.write(sales.limit(2), str(out), single_file=True)  # replaces the file
    assert len(pd.read_csv(out)) == 2
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.endswith(".crc")) == ["sales.csv"]
    pq_out = tmp_path / "sales.parquet"
    ctx.write(sales, str(pq_out), single_file=True)
    assert pq.read_table(pq_out).num_rows == 3


def test_json_lines_and_json_array(ctx: SparkEngineContext, tmp_path: Path) -> None:
    lines = tmp_path / "a.jsonl"
    lines.write_text('{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n')
    array = tmp_path / "b.json"
    array.write_text(json.dumps([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], indent=2))
    assert _rows(ctx.read(str(lines))) == [(1, "a"), (2, "b")]
    assert _rows(ctx.read(str(array))) == [(1, "a"), (2, "b")]


def test_partitioned_parquet_write(ctx: SparkEngineContext, sales, tmp_path: Path) -> None:
    target = tmp_path / "by_store"
    info = ctx.write(sales, str(target), format="parquet", partition_by=["store"])
    assert info.rows == 3
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == ["store=north", "store=south"]
    assert ctx.read(str(target)).filter("store = 'north'").count() == 2


def test_write_accepts_pandas_and_arrow(ctx: SparkEngineContext, tmp_path: Path) -> None:
    pdf = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    ctx.write(pdf, str(tmp_path / "p"), format="parquet")
    ctx.write(pa.Table.from_pandas(pdf), str(tmp_path / "q.parquet"))
    assert pq.read_table(tmp_path / "p").num_rows == 2
    assert ctx.read(str(tmp_path / "q.parquet")).count() == 2


def test_catalog_table_round_trip(ctx: SparkEngineContext, sales) -> None:
    info = ctx.write(sales, "odibi_sales_tbl", source_type="table", table_format="parquet")
    assert info.rows == 3
    try:
        assert ctx.read("odibi_sales_tbl", source_type="table").count() == 3
    finally:
        ctx.spark.sql("DROP TABLE IF EXISTS odibi_sales_tbl")


def test_date_and_timestamp_round_trip_through_parquet(ctx: SparkEngineContext, tmp_path: Path) -> None:
    df = ctx.spark.createDataFrame([(dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 12, 30))], "d date, ts timestamp")
    ctx.write(df, str(tmp_path / "dates"), format="parquet")
    table = pq.read_table(tmp_path / "dates")
    assert str(table.schema.field("d").type) == "date32[day]"
    assert table.column("d").to_pylist() == [dt.date(2024, 1, 1)]


def test_unknown_mode_and_merge_on_files_fail(ctx: SparkEngineContext, sales, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="merge"):
        ctx.write(sales, str(tmp_path / "x"), format="parquet", mode="merge", merge_keys=["sale_id"])


def test_failed_overwrite_leaves_the_target_intact(ctx: SparkEngineContext, sales, tmp_path: Path) -> None:
    target = tmp_path / "keep"
    ctx.write(sales, str(target), format="parquet")
    boom = sales.selectExpr("sale_id", "CAST(store AS INT) AS bad")  # ANSI: the cast fails at run time
    with pytest.raises(RuntimeError, match="cannot write"):
        ctx.write(boom, str(target), format="parquet")
    assert ctx.read(str(target)).count() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_a_write_removes_what_killed_writes_to_its_target_left(ctx: SparkEngineContext, sales, tmp_path: Path) -> None:
    import subprocess
    import sys

    from odibi_dagster.engines import paths

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "sales.parquet"
    leftover = tmp_path / f".sales.parquet.{paths._HOST_TAG}-{dead.pid}-0123456789ab.tmp"
    leftover.mkdir()
    (leftover / "part-00000.parquet").write_text("half")
    other = tmp_path / ".orders.parquet.0123456789ab.tmp"
    other.write_text("not ours")
    ctx.write(sales, str(target), format="parquet", mode="overwrite")
    assert ctx.read(str(target), format="parquet").count() == 3
    assert not leftover.exists() and other.exists()


def test_csv_null_tokens_match_the_pandas_engine(ctx: SparkEngineContext, tmp_path: Path) -> None:
    tokens = ["N/A", "NA", "null", "NULL", "NaN", "n/a", "nan", "-NaN", "#N/A", "<NA>", "None", ""]
    lines = ["id,amount,label,flag,empty"] + [f"{i},{t},{t},true," for i, t in enumerate(tokens)] + ["99,7.5,x,false,"]
    src = tmp_path / "dirty.csv"
    src.write_text("\n".join(lines) + "\n")
    expected = pd.read_csv(src)
    df = ctx.read(str(src))
    assert dict(df.dtypes) == {
        "id": "bigint",
        "amount": "double",
        "label": "string",
        "flag": "boolean",
        "empty": "double",
    }
    got = df.toPandas()
    assert got["amount"].count() == expected["amount"].count() == 1
    assert got["label"].count() == expected["label"].count() == 1
    assert got["flag"].tolist() == expected["flag"].tolist()
    raw = ctx.read(str(src), keep_default_na=False)  # Spark's own reading: tokens stay text
    assert raw.filter("label = 'N/A'").count() == 1


def test_format_names_and_unknown_formats_are_the_same_as_on_pandas(
    ctx: SparkEngineContext, sales, tmp_path: Path
) -> None:
    from odibi_dagster.engines.pandas_duckdb import PandasDuckDBContext

    with PandasDuckDBContext() as duck:
        for source, params in [("noext", {}), ("a.csv", {"format": "xlsx"}), (str(tmp_path / "x.unknown"), {})]:
            with pytest.raises(ValueError) as on_spark:
                ctx.read(source, **params)
            with pytest.raises(ValueError) as on_pandas:
                duck.read(source, **params)
            assert str(on_spark.value) == str(on_pandas.value)  # no silent Parquet on Spark
        # aliases mean the same on both engines
        aliases = [("tsv", "csv"), ("text", "csv"), ("postgres", "sql"), ("ndjson", "jsonl"), ("pq", "parquet")]
        for alias, fmt in aliases:
            assert ctx.source_format("t", {"format": alias}) == duck.source_format("t", {"format": alias}) == fmt
    # tsv: tab-separated CSV both ways
    target = tmp_path / "sales.tsv"
    info = ctx.write(sales, str(target), single_file=True)
    assert info.format == "csv" and target.read_text().splitlines()[0] == "sale_id\tstore\tamount\tsale_date"
    assert ctx.read(str(target)).count() == 3
    assert ctx.read(str(target), format="tsv").columns == ["sale_id", "store", "amount", "sale_date"]
