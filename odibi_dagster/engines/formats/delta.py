"""Delta Lake on the pandas+DuckDB engine through ``deltalake`` (delta-rs).

Reads are lazy relations over the table's Arrow dataset (``version`` / ``timestamp`` for
time travel; DuckDB pushes projections and filters into the scan). Writes stream Arrow
batches out of DuckDB: ``mode`` overwrite | append | merge (``merge_keys``), one Delta
commit each, so a failure leaves the previous version; ``WriteInfo.version`` is the
committed version.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from odibi_dagster.config.templating import quote_ident
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats import duck

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["open_delta_dataset", "read_delta", "write_delta"]

_DELTA_READ_PARAMS = {"version", "timestamp", "columns", "nrows", "storage_options"}
_DELTA_WRITE_PARAMS = {
    "mode",
    "partition_by",
    "schema_mode",
    "merge_keys",
    "storage_options",
    "predicate",
    "target_file_size",
    "configuration",
    "description",
    "name",
}


def open_delta_dataset(
    source: str,
    version: int | None = None,
    timestamp: str | datetime | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """A lazy ``pyarrow.dataset.Dataset`` over a Delta table (optionally time-travelled)."""
    from deltalake import DeltaTable

    path = paths.local_path(str(source))
    if not paths.is_remote(path) and not os.path.isdir(os.path.join(path, "_delta_log")):
        raise FileNotFoundError(f"no Delta table at {source!r}")
    opts = paths.delta_storage_options(path, dict(storage_options or {}))
    dt = DeltaTable(path, version=version, storage_options=opts)
    if timestamp is not None:
        dt.load_as_version(timestamp)
    return dt.to_pyarrow_dataset()


def read_delta(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """A Delta table as a lazy relation over its Arrow dataset."""
    duck.check_params("delta", "reader", params, _DELTA_READ_PARAMS)
    if params.get("version") is not None and params.get("timestamp") is not None:
        raise ValueError("delta reader: pass either version or timestamp, not both")
    ds = open_delta_dataset(
        source,
        version=None if params.get("version") is None else int(params["version"]),
        timestamp=params.get("timestamp"),
        storage_options=params.get("storage_options"),
    )
    return duck.project(conn.from_arrow(ds), params)


class _CountingReader:
    """Wraps an Arrow stream to count the rows that pass through it."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.rows = 0
        self._reader = reader

    def stream(self) -> pa.RecordBatchReader:
        import pyarrow as pa

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in self._reader:
                self.rows += batch.num_rows
                yield batch

        return pa.RecordBatchReader.from_batches(self._reader.schema, batches())


def _merge(target: str, storage: Any, stream: pa.RecordBatchReader, merge_keys: list[str]) -> dict[str, Any]:
    """Upsert ``stream`` into the table on ``merge_keys``; the merge's numeric metrics."""
    from deltalake import DeltaTable

    predicate = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in merge_keys)
    metrics = (
        DeltaTable(target, storage_options=storage)
        .merge(stream, predicate, source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def write_delta(conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any) -> WriteInfo:
    """A Delta table: ``mode`` overwrite | append | merge (``merge_keys``; merging into a
    missing table creates it)."""
    from deltalake import DeltaTable, write_deltalake

    params, mode = duck.writer_params("delta", params, _DELTA_WRITE_PARAMS, ("overwrite", "append", "merge"))
    target = paths.local_path(str(target))
    storage = paths.delta_storage_options(target, params.pop("storage_options", None))
    merge_keys = duck.as_list(params.pop("merge_keys", None))
    if mode == "merge" and not merge_keys:
        raise ValueError("delta writer: mode='merge' needs merge_keys")
    existed = paths.exists(target)
    counter = _CountingReader(rel.to_arrow_reader())
    extra: dict[str, Any] = {"mode": mode}
    try:
        if mode == "merge" and existed and DeltaTable.is_deltatable(target, storage_options=storage):
            extra["merge_metrics"] = _merge(target, storage, counter.stream(), merge_keys)
        else:
            write_mode = "append" if mode == "merge" else mode
            write_deltalake(target, counter.stream(), mode=write_mode, storage_options=storage, **params)
    except BaseException:
        # A failed first write must not leave a half-made table directory behind.
        if not existed and not paths.is_remote(target):
            shutil.rmtree(target, ignore_errors=True)
        raise
    version = DeltaTable(target, storage_options=storage).version()
    return WriteInfo(uri=str(target), format="delta", rows=counter.rows, version=version, extra=extra)


duck.register_format("delta", read_delta, write_delta, _DELTA_READ_PARAMS, _DELTA_WRITE_PARAMS)
