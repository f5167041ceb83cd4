"""Snapshots of persisted datasets (Parquet, Delta) and pandas frames; ODIBI's schema diff."""

from __future__ import annotations

import datetime as dt
import decimal
import io

import fsspec
import fsspec.implementations.memory
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from odibi_dagster.engines.base import DatasetRef, Snapshot
from odibi_dagster.observe.snapshot import (
    normalize_type,
    schema_diff,
    snapshot_frame_pandas,
    snapshot_ref,
    snapshot_table_arrow,
)


def _table(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "name": [f"n{i}" for i in range(start, start + n)],
            "amount": pa.array([i * 1.5 for i in range(n)], pa.float64()),
        }
    )


def test_schema_diff_matches_odibi_shape():
    before = Snapshot(10, (("id", "int64"), ("name", "string"), ("value", "double"), ("timestamp", "string")))
    after = Snapshot(3, (("id", "int32"), ("name", "string"), ("count", "int64"), ("avg_value", "double")))
    assert schema_diff(before, after) == {
        "added_columns": ["count", "avg_value"],
        "removed_columns": ["value", "timestamp"],
        "changed_types": [{"column": "id", "before": "int64", "after": "int32"}],
    }


def test_schema_diff_accepts_pairs_and_none():
    assert schema_diff([["a", "int64"]], [("a", "int64")]) == {
        "added_columns": [],
        "removed_columns": [],
        "changed_types": [],
    }
    assert schema_diff(None, [("a", "int64")])["added_columns"] == ["a"]


def test_snapshot_parquet_file_uses_footer_and_head(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(_table(10_000), path, row_group_size=1_000)
    snap = snapshot_ref(DatasetRef(paths=(str(path),)), sample_rows=5)
    assert snap.row_count == 10_000
    assert snap.schema == (("id", "int64"), ("name", "string"), ("amount", "double"))
    assert isinstance(snap.sample, pd.DataFrame)
    assert list(snap.sample["id"]) == [0, 1, 2, 3, 4]


class _CountingFile(io.BytesIO):
    def read(self, n=-1):
        data = super().read(n)
        _CountingMemoryFS.bytes_read += len(data)
        return data


class _CountingMemoryFS(fsspec.implementations.memory.MemoryFileSystem):
    """An in-memory filesystem that counts the bytes readers pull out of it."""

    protocol = "countmem"
    bytes_read = 0

    def _open(self, path, mode="rb", **kwargs):
        if mode == "rb":
            return _CountingFile(self.cat_file(path))
        return super()._open(path, mode, **kwargs)


def test_snapshot_parquet_reads_footer_and_first_rows_only():
    fsspec.register_implementation("countmem", _CountingMemoryFS, clobber=True)
    fs = fsspec.filesystem("countmem")
    rng = np.random.default_rng(0)
    table = pa.table({"id": np.arange(400_000), "x": rng.random(400_000), "y": rng.random(400_000)})
    with fs.open("countmem://big/day=1/data.parquet", "wb") as fh:
        pq.write_table(table, fh, row_group_size=20_000, compression="none")
    size = fs.size("countmem://big/day=1/data.parquet")
    _CountingMemoryFS.bytes_read = 0
    snap = snapshot_ref(DatasetRef(paths=("countmem://big",)), sample_rows=3)
    assert snap.row_count == 400_000
    assert snap.columns == ["id", "x", "y", "day"]  # hive partition column included
    assert list(snap.sample["id"]) == [0, 1, 2]
    assert list(snap.sample["day"]) == [1, 1, 1]
    # Footer + (at most) the first row group: a small fraction of the file.
    assert _CountingMemoryFS.bytes_read < size * 0.2, (_CountingMemoryFS.bytes_read, size)


def test_snapshot_parquet_folder_and_partitions(tmp_path):
    part_a = tmp_path / "p=2024-01-01"
    part_a.mkdir()
    pq.write_table(_table(4), part_a / "part-0.parquet")
    pq.write_table(_table(3, 4), part_a / "part-1.parquet")
    (part_a / ".part-2.parquet.tmp").write_bytes(b"half written")  # ignored: temp file
    file_b = tmp_path / "2024-01-02.parquet"
    pq.write_table(_table(2, 100), file_b)
    ref = DatasetRef(paths=(str(part_a), str(file_b)), partition_keys=("2024-01-01", "2024-01-02"))
    snap = snapshot_ref(ref, sample_rows=10)
    assert snap.row_count == 9
    assert snap.columns == ["id", "name", "amount"]
    assert len(snap.sample) == 9


def test_snapshot_parquet_empty_and_no_sample(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(_table(0), path)
    snap = snapshot_ref(DatasetRef(paths=(str(path),)), sample_rows=0)
    assert snap.row_count == 0
    assert snap.sample is None
    assert snapshot_ref(DatasetRef(paths=())).row_count == 0


def test_snapshot_parquet_remote_fsspec_path():
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("memory://bucket/ds/data.parquet", "wb") as fh:
        pq.write_table(_table(7), fh)
    snap = snapshot_ref(DatasetRef(paths=("memory://bucket/ds/data.parquet",)))
    assert snap.row_count == 7
    assert len(snap.sample) == 5


def test_snapshot_delta_counts_from_add_actions(tmp_path, monkeypatch):
    path = str(tmp_path / "delta")
    write_deltalake(path, _table(6))
    write_deltalake(path, _table(4, 6), mode="append")
    # The count must come from the log's stats, not from scanning the files.
    original = DeltaTable.to_pyarrow_dataset

    class NoCount:
        def __init__(self, dataset):
            self.dataset = dataset

        def __getattr__(self, name):
            return getattr(self.dataset, name)

        def count_rows(self):
            pytest.fail("counted by scanning")

    monkeypatch.setattr(DeltaTable, "to_pyarrow_dataset", lambda self, *a, **k: NoCount(original(self, *a, **k)))
    snap = snapshot_ref(DatasetRef(paths=(path,), format="delta"), sample_rows=5)
    assert snap.row_count == 10
    assert snap.schema == (("id", "int64"), ("name", "string"), ("amount", "double"))
    assert len(snap.sample) == 5


def test_snapshot_delta_falls_back_to_count_when_stats_missing(tmp_path, monkeypatch):
    path = str(tmp_path / "delta")
    write_deltalake(path, _table(12))
    monkeypatch.setattr(DeltaTable, "get_add_actions", lambda self, flatten=False: pa.table({"path": ["x"]}))
    snap = snapshot_ref(DatasetRef(paths=(path,), format="delta"), sample_rows=2)
    assert snap.row_count == 12
    assert len(snap.sample) == 2


def test_snapshot_pandas_types_match_parquet(tmp_path):
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["a", None, "c"],
            "amount": [1.0, float("nan"), 3.5],
            "day": [dt.date(2024, 1, d) for d in (1, 2, 3)],
            "price": [decimal.Decimal("1.10"), decimal.Decimal("2.20"), None],
        }
    )
    pandas_snap = snapshot_frame_pandas(df, sample_rows=2)
    path = tmp_path / "df.parquet"
    df.to_parquet(path, index=False)
    parquet_snap = snapshot_ref(DatasetRef(paths=(str(path),)))
    assert pandas_snap.row_count == 3
    assert len(pandas_snap.sample) == 2
    # Same data, same types: a pandas step and its persisted output show no schema change.
    assert schema_diff(pandas_snap, parquet_snap)["changed_types"] == []


def test_snapshot_pandas_mixed_object_column_falls_back():
    df = pd.DataFrame({"mixed": [1, "a", 2.5], "ok": [1, 2, 3]})
    snap = snapshot_frame_pandas(df)
    assert dict(snap.schema)["ok"] == "int64"
    assert "mixed" in dict(snap.schema)


def test_snapshot_arrow_table():
    snap = snapshot_table_arrow(_table(8), sample_rows=3)
    assert snap.row_count == 8 and len(snap.sample) == 3 and snap.columns == ["id", "name", "amount"]


def test_physical_layout_variants_are_not_type_changes():
    assert normalize_type("large_string") == "string"
    assert normalize_type("large_list<item: large_string>") == "list<item: string>"
    assert normalize_type("string_view") == "string" and normalize_type("timestamp[us]") == "timestamp[us]"
    large = snapshot_table_arrow(pa.table({"s": pa.array(["a"], pa.large_string())}))
    small = snapshot_table_arrow(pa.table({"s": pa.array(["a"], pa.string())}))
    assert large.schema == small.schema == (("s", "string"),)
    assert schema_diff([("s", "large_string")], [("s", "string")])["changed_types"] == []


def test_duckdb_written_parquet_is_described_by_duckdb_as_arrow_would(tmp_path):
    """Files DuckDB wrote (every SQL step's dataset) are snapshotted without pandas or pyarrow:
    same rows, schema (Arrow's names), tracker sample and metadata sample as through Arrow."""
    import duckdb

    from odibi_dagster.engines.base import SampleRows
    from odibi_dagster.observe.metadata import sample_markdown
    from odibi_dagster.observe.snapshot import _snapshot_parquet
    from odibi_dagster.observe.tracker import snapshot_to_dict

    path = tmp_path / "duck.parquet"
    duckdb.sql(f"""
        COPY (SELECT i % 2 = 0 AS b, i::TINYINT AS i8, i::SMALLINT AS i16, i::INTEGER AS i32, i::BIGINT AS i64,
                     i::UTINYINT AS u8, i::UBIGINT AS u64, (i * 1.1)::FLOAT AS f32, i * 2.5 AS f64,
                     CASE WHEN i = 1 THEN NULL ELSE 'r|' || i END AS s, DATE '2024-01-02' + i::INTEGER AS d,
                     TIMESTAMP '2024-01-02 03:04:05.123456' + INTERVAL (i) HOUR AS ts,
                     (i * 1.25)::DECIMAL(10, 2) AS dec, CASE WHEN i = 2 THEN NULL ELSE i END AS maybe
              FROM range(7) t(i)) TO '{path}' (FORMAT parquet)""")
    fast = snapshot_ref(DatasetRef(paths=(str(path),)), sample_rows=5)
    slow = _snapshot_parquet([str(path)], 5, None)
    assert isinstance(fast.sample, SampleRows) and isinstance(slow.sample, pd.DataFrame)
    assert (fast.row_count, fast.schema) == (slow.row_count, slow.schema) == (7, fast.schema)
    assert len(fast.schema) == 14
    assert snapshot_to_dict(fast, "x", timestamp="t") == snapshot_to_dict(slow, "x", timestamp="t")
    # pandas shows a float32 column widened (1.100000023841858): compare with its short form.
    short = slow.sample.assign(f32=slow.sample["f32"].astype(str).astype("float64"))
    fast_md, slow_md = sample_markdown(fast.sample), sample_markdown(short)
    # pandas shows an integer column with a null as floats (2.0); DuckDB's values keep them whole.
    assert fast_md.replace(".0 |", " |") == slow_md.replace(".0 |", " |")
    assert "| 1.1 |" in fast_md


def test_arrow_written_parquet_keeps_the_arrow_snapshot(tmp_path):
    path = tmp_path / "arrow.parquet"
    pq.write_table(pa.table({"s": pa.array(["a", "b"], pa.large_string()), "t": pa.array([1, 2], pa.int16())}), path)
    snap = snapshot_ref(DatasetRef(paths=(str(path),)), sample_rows=2)
    assert isinstance(snap.sample, pd.DataFrame)  # the file carries Arrow's schema: Arrow reads it
    assert snap.schema == (("s", "string"), ("t", "int16"))
