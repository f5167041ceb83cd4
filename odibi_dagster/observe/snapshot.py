"""Tracker snapshots of persisted datasets and pandas frames, and ODIBI's schema diff.

A snapshot is ODIBI's "photograph" of a dataset: its row count, its schema as
``(column, type)`` pairs and a few sample rows. Persisted datasets are never read
whole: Parquet row counts and schemas come from the file footers, Delta row counts
from the transaction log's add-action statistics, and samples from the first rows.
Types are Arrow type names (``str(pyarrow.DataType)``) everywhere, so the schema of a
pandas frame and the schema of the Parquet file it was written to compare equal.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from odibi_dagster.engines.base import DatasetRef, Snapshot

if TYPE_CHECKING:  # imported where used: loading definitions needs neither
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

__all__ = ["normalize_type", "schema_diff", "snapshot_frame_pandas", "snapshot_ref", "snapshot_table_arrow"]

SchemaLike = Snapshot | Sequence[Sequence[str]] | Mapping[str, str] | None


def _filesystem(path: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """(filesystem, path-in-filesystem) for ``path``; ``None`` means pyarrow's local FS."""
    if path.startswith("file://"):
        return None, path[len("file://") :]
    if "://" not in path:
        return None, path
    import fsspec  # only needed for remote paths (abfs://, s3://, memory://, ...)

    from odibi_dagster.engines.paths import storage_options_for

    # The environment's Azure settings, as the engines use them: without them adlfs reads the
    # environment itself, and fsspec's instance cache (keyed by the arguments) would hand back a
    # filesystem made for an earlier connection string.
    options = dict(storage_options) if storage_options else storage_options_for(path)
    fs, root = fsspec.core.url_to_fs(path, **options)
    return fs, root


_PHYSICAL_VARIANTS = re.compile(r"\blarge_(string|binary|list)\b|\b(string|binary|list)_view\b")


def normalize_type(type_name: str) -> str:
    """An Arrow type name without physical-layout variants: ``large_string`` and
    ``string_view`` are ``string`` (same for binary and list).

    pandas, DuckDB and Spark pick different layouts for the same logical column; a
    schema diff or Dagster's schema-change check should not report that as a change.
    """
    return _PHYSICAL_VARIANTS.sub(lambda m: m.group(1) or m.group(2), str(type_name))


def _arrow_schema_pairs(schema: pa.Schema) -> tuple[tuple[str, str], ...]:
    return tuple((field.name, normalize_type(str(field.type))) for field in schema)


def _table_to_pandas(table: pa.Table) -> pd.DataFrame:
    import pyarrow as pa

    try:
        return table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OverflowError):
        # Out-of-range timestamps, odd extension types: keep Python objects instead.
        return table.to_pandas(timestamp_as_object=True, date_as_object=True, ignore_metadata=True)


def _unified_schema(schemas: list[pa.Schema]) -> pa.Schema:
    import pyarrow as pa

    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return schemas[0]


def _parquet_head(dataset: ds.Dataset, n: int) -> list[pa.Table]:
    """The first ``n`` rows of a Parquet dataset, reading one row group at a time.

    ``Dataset.head`` reads ahead across row groups and files (the whole file, for small
    files); scanning one row-group subset of one fragment at a time reads only what the
    sample needs: the footer and the first non-empty row group(s).
    """
    import pyarrow.dataset as ds

    parts: list[pa.Table] = []
    remaining = n
    options = ds.ParquetFragmentScanOptions(pre_buffer=False)
    for fragment in dataset.get_fragments():
        if remaining <= 0:
            break
        groups = getattr(fragment, "row_groups", None)
        if groups is None:  # not a Parquet fragment: let Arrow do it
            part = fragment.head(remaining)
            parts.append(part)
            remaining -= part.num_rows
            continue
        for group in groups:
            if remaining <= 0:
                break
            if group.num_rows == 0:
                continue
            piece = fragment.subset(row_group_ids=[group.id])
            scanner = ds.Scanner.from_fragment(
                piece, schema=dataset.schema, fragment_scan_options=options, batch_readahead=0
            )
            part = scanner.head(remaining)
            if part.num_rows:
                parts.append(part)
                remaining -= part.num_rows
    return parts


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    if not parts:
        return schema.empty_table()
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return parts[0]


def _head_across(datasets: list[ds.Dataset], n: int, schema: pa.Schema) -> pa.Table:
    """The first ``n`` rows across Parquet ``datasets``, reading no more than needed."""
    parts: list[pa.Table] = []
    for dataset in datasets:
        remaining = n - sum(p.num_rows for p in parts)
        if remaining <= 0:
            break
        parts.extend(_parquet_head(dataset, remaining))
    return _concat(parts, schema)


def _snapshot_parquet(paths: Sequence[str], sample_rows: int, storage_options: Mapping[str, Any] | None) -> Snapshot:
    import pyarrow.dataset as ds

    datasets = []
    for path in paths:
        fs, root = _filesystem(path, storage_options)
        # One dataset per path (a file or a folder of files); partitions may differ in schema,
        # so they are counted and sampled one by one instead of unioned.
        datasets.append(ds.dataset(root, format="parquet", filesystem=fs, partitioning="hive"))
    schema = _unified_schema([d.schema for d in datasets])
    # count_rows() without a filter is answered from the Parquet footers.
    rows = sum(int(d.count_rows()) for d in datasets)
    sample = _table_to_pandas(_head_across(datasets, sample_rows, schema)) if sample_rows > 0 else None
    return Snapshot(row_count=rows, schema=_arrow_schema_pairs(schema), sample=sample)


def _delta_row_count(table: Any) -> int:
    """Rows of a Delta table from add-action stats, falling back to a (footer) count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        actions = pa.table(table.get_add_actions(flatten=True))
        if "num_records" in actions.column_names:
            counts = actions.column("num_records")
            # Files written without stats have null num_records: their count is unknown.
            if counts.null_count == 0:
                return int(pc.sum(counts).as_py() or 0)
    except Exception:
        pass
    return int(table.to_pyarrow_dataset().count_rows())


def _snapshot_delta(paths: Sequence[str], sample_rows: int, storage_options: Mapping[str, Any] | None) -> Snapshot:
    import pyarrow as pa
    from deltalake import DeltaTable

    from odibi_dagster.engines.paths import delta_storage_options

    tables = [
        # Remote tables (a Spark dataset on abfs://) take the environment's Azure settings, as the engines do.
        DeltaTable(path, storage_options=dict(storage_options) if storage_options else delta_storage_options(path))
        for path in dict.fromkeys(paths)  # one Delta table may back several partitions
    ]
    schema = _unified_schema([pa.schema(t.schema().to_arrow()) for t in tables])
    rows = sum(_delta_row_count(t) for t in tables)
    sample = None
    if sample_rows > 0:
        parts: list[pa.Table] = []
        for table in tables:
            remaining = sample_rows - sum(p.num_rows for p in parts)
            if remaining <= 0:
                break
            dataset = table.to_pyarrow_dataset()
            try:
                parts.extend(_parquet_head(dataset, remaining))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, AttributeError, TypeError):
                part = dataset.head(remaining)
                if part.num_rows:
                    parts.append(part)
        sample = _table_to_pandas(_concat(parts, schema))
    return Snapshot(row_count=rows, schema=_arrow_schema_pairs(schema), sample=sample)


# Snapshots of local Parquet files this process took, by (files, their stamps, sample rows): a
# dataset file is only ever replaced, never rewritten in place, so the same stamps mean the same
# snapshot. A step's input is the file its upstream step just described: one read, not two.
_SNAPSHOTS: dict[tuple[Any, ...], Snapshot] = {}


def _file_stamps(files: Sequence[str]) -> tuple[tuple[int, int, int], ...] | None:
    try:
        stats = [os.stat(f) for f in files]
    except OSError:
        return None
    if not all(stat.S_ISREG(st.st_mode) for st in stats):
        return None  # a folder of part files: its files can change under the same stamp
    return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats)


def _cached_parquet(files: Sequence[str], sample_rows: int) -> Snapshot:
    stamps = _file_stamps(files)
    if stamps is None:
        return _snapshot_local_parquet(files, sample_rows)
    key = (tuple(files), stamps)
    hit = _SNAPSHOTS.get((*key, sample_rows))
    if hit is None and sample_rows == 0:
        # Any sample size answers a question about rows and schema only.
        hit = next((v for k, v in _SNAPSHOTS.items() if k[:2] == key), None)
        hit = Snapshot(hit.row_count, hit.schema, None) if hit is not None else None
    if hit is None:
        hit = _snapshot_local_parquet(files, sample_rows)
        if len(_SNAPSHOTS) >= 256:
            _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
        _SNAPSHOTS[(*key, sample_rows)] = hit
    return hit


def _snapshot_local_parquet(files: Sequence[str], sample_rows: int) -> Snapshot:
    """Local Parquet files through DuckDB when it describes them as Arrow would (files DuckDB
    wrote: every SQL step's dataset), else through ``pyarrow.dataset``."""
    from odibi_dagster.engines.formats.parquet import duckdb_parquet_snapshot
    from odibi_dagster.engines.pandas_duckdb import shared_cursor

    conn = shared_cursor()
    try:
        snap = duckdb_parquet_snapshot(conn, files, sample_rows)
    except Exception:  # not readable by DuckDB: Arrow says why, or copes
        snap = None
    finally:
        conn.close()
    return snap if snap is not None else _snapshot_parquet(files, sample_rows, None)


def snapshot_ref(
    ref: DatasetRef, sample_rows: int = 5, *, storage_options: Mapping[str, Any] | None = None
) -> Snapshot:
    """Snapshot a persisted dataset without reading it whole.

    Parquet: row count and schema from the footers, sample from the first rows; local files
    DuckDB wrote are read by DuckDB (sample as ``SampleRows``, no pandas), others by
    ``pyarrow.dataset`` (sample as pandas). Delta: schema from the log, row count from the
    add-actions' ``num_records`` (a footer count when stats are missing), sample from the
    first rows. ``storage_options`` are passed to fsspec / deltalake for remote paths (``abfs://``).
    """
    if not ref.paths:
        return Snapshot(row_count=0, schema=(), sample=None)
    if ref.format == "parquet" and storage_options is None and not any("://" in p for p in ref.paths):
        return _cached_parquet(ref.paths, sample_rows)
    if ref.format == "delta":
        return _snapshot_delta(ref.paths, sample_rows, storage_options)
    if ref.format == "source":  # ingested by reference: the snapshot taken at ingest
        from odibi_dagster.engines.source_ref import manifests_snapshot

        return manifests_snapshot(ref.paths, sample_rows)
    return _snapshot_parquet(ref.paths, sample_rows, storage_options)


def _pandas_column_type(series: pd.Series) -> str:
    import pyarrow as pa

    try:
        return str(pa.Array.from_pandas(series.head(1000)).type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        return str(series.dtype)


def snapshot_frame_pandas(df: pd.DataFrame, sample_rows: int = 5) -> Snapshot:
    """Snapshot a pandas DataFrame: ``len(df)``, Arrow-typed schema, first ``sample_rows`` rows.

    Types are the Arrow types the frame would be written with, so they compare equal
    to the schema of a Parquet snapshot of the same data.
    """
    import pyarrow as pa

    try:
        schema = _arrow_schema_pairs(pa.Schema.from_pandas(df, preserve_index=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        # Mixed-type object columns: type each column on its own, dtype name as last resort.
        schema = tuple((str(col), _pandas_column_type(df[col])) for col in df.columns)
    sample = df.head(sample_rows).reset_index(drop=True) if sample_rows > 0 else None
    return Snapshot(row_count=len(df), schema=schema, sample=sample)


def snapshot_table_arrow(table: pa.Table, sample_rows: int = 5) -> Snapshot:
    """Snapshot an in-memory Arrow table (rows, schema, first rows as pandas)."""
    sample = _table_to_pandas(table.slice(0, sample_rows)) if sample_rows > 0 else None
    return Snapshot(row_count=table.num_rows, schema=_arrow_schema_pairs(table.schema), sample=sample)


def _schema_map(value: SchemaLike) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Snapshot):
        return {str(c): str(t) for c, t in value.schema}
    if isinstance(value, Mapping):
        return {str(c): str(t) for c, t in value.items()}
    return {str(pair[0]): str(pair[1]) for pair in value}


def schema_diff(before: SchemaLike, after: SchemaLike) -> dict[str, Any]:
    """ODIBI's schema diff between two snapshots (or schemas as ``(column, type)`` pairs).

    Returns ``{"added_columns": [...], "removed_columns": [...],
    "changed_types": [{"column", "before", "after"}, ...]}``, columns in schema order.
    Types that differ only in physical layout (``large_string`` vs ``string``) are equal.
    """
    before_cols = _schema_map(before)
    after_cols = _schema_map(after)
    same = {
        c for c in before_cols if c in after_cols and normalize_type(before_cols[c]) == normalize_type(after_cols[c])
    }
    return {
        "added_columns": [c for c in after_cols if c not in before_cols],
        "removed_columns": [c for c in before_cols if c not in after_cols],
        "changed_types": [
            {"column": c, "before": before_cols[c], "after": after_cols[c]}
            for c in before_cols
            if c in after_cols and c not in same
        ],
    }
