"""The Spark engine's readers and writers, one per format of the format table, registered in
the one format registry (:mod:`odibi_dagster.engines.formats.registry`).

File formats (CSV, JSON, JSON lines, Parquet, Avro, ORC) go through Spark's data sources;
CSV defaults to ``header`` and pandas' type inference and null tokens, a ``.json`` file
holding an array is read as one. Delta takes ``version``/``timestamp`` for time travel and
``mode: merge`` with ``merge_keys``. ``sqlite`` and ``sql`` go through JDBC (``url`` /
``jdbc_url``, ``table`` or ``query``, ``driver``, ``user``, ``password``); ``table`` is a
catalog table. Other scalar params are Spark options.

Writes of files go to a hidden sibling and are swapped in (``single_file`` writes one file);
Delta commits atomically. Errors are re-raised without the Java exception chain and with
secrets masked (:meth:`SparkEngineContext.redact`): the Java text may quote a JDBC URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats.registry import FormatIO, register
from odibi_dagster.engines.spark import hadoop
from odibi_dagster.engines.spark.common import ENGINE, failure, observe, observed_rows, options, write_mode
from odibi_dagster.engines.spark.csv_nulls import pandas_null_read
from odibi_dagster.engines.spark.jars import split_csv
from odibi_dagster.engines.spark.jdbc import read_jdbc, write_jdbc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from odibi_dagster.engines.spark.context import SparkEngineContext

# Canonical formats whose Spark data source has another name.
_DATA_SOURCE = {"jsonl": "json"}

# --------------------------------------------------------------------------------------
# Files: CSV, JSON, JSON lines, Parquet, Avro, ORC; Delta
# --------------------------------------------------------------------------------------


def _read_defaults(fmt: str, path: str) -> dict[str, str]:
    if fmt == "csv":
        return {"header": "true", "inferSchema": "true"}
    if fmt == "json" and path.lower().endswith(".json"):
        local = hadoop.local_path(path)
        if local is not None and local.is_file():
            with local.open("rb") as fh:
                head = fh.read(4096).lstrip()
            if head.startswith(b"["):  # a JSON array, not JSON Lines
                return {"multiLine": "true"}
    return {}


def _delta_read_options(params: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    version = params.get("versionAsOf", params.get("version"))
    timestamp = params.get("timestampAsOf", params.get("timestamp"))
    if version is not None:
        out["versionAsOf"] = str(int(version))
    if timestamp is not None:
        out["timestampAsOf"] = str(timestamp)
    return out


def read_files(ctx: SparkEngineContext, source: str, fmt: str, params: Mapping[str, Any]) -> DataFrame:
    """A lazy DataFrame over ``source`` (a file, directory or glob) in format ``fmt``."""
    path = hadoop.qualify(source)
    reader = ctx.spark.read.format(_DATA_SOURCE.get(fmt, fmt))
    if params.get("schema") is not None:
        reader = reader.schema(params["schema"])
    opts = _read_defaults(fmt, path)
    opts.update(options(params))
    if fmt == "delta":
        opts.update(_delta_read_options(params))
    try:
        if fmt == "csv":
            return pandas_null_read(reader, path, opts, params)
        return reader.options(**opts).load(path)
    except Exception as exc:
        raise failure(ctx, exc, fmt, f"read {path}") from None


def write_files(ctx: SparkEngineContext, sdf: DataFrame, target: str, fmt: str, params: Mapping[str, Any]) -> WriteInfo:
    """Write ``sdf`` as ``fmt`` files at ``target`` (see the module docstring)."""
    path, mode = hadoop.qualify(target), write_mode(fmt, params)
    opts = {"header": "true"} if fmt == "csv" else {}
    opts.update(options(params))
    partition_by = split_csv(params.get("partition_by") or params.get("partitionBy"))
    single_file = bool(params.get("single_file"))
    if single_file:
        if mode != "overwrite" or partition_by:
            raise ValueError("single_file writes support mode overwrite without partition_by only")
        sdf = sdf.coalesce(1)
    observed, obs = observe(sdf)

    def save(dest: str, save_mode: str) -> None:
        writer = observed.write.format(_DATA_SOURCE.get(fmt, fmt)).mode(save_mode).options(**opts)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(dest)

    hadoop.remove_stale_temps(ctx.spark, path)
    tmp = hadoop.sibling_tmp(path, "tmp")
    try:
        if mode != "overwrite":
            save(path, mode)
        else:
            save(tmp, "overwrite")
            (hadoop.move_single_part if single_file else hadoop.replace)(ctx.spark, tmp, path)
    except Exception as exc:
        hadoop.remove_quietly(ctx.spark, tmp)  # a failed write leaves the target as it was, and no litter
        raise failure(ctx, exc, fmt, f"write {path}") from None
    return WriteInfo(uri=hadoop.uri_of(target), format=fmt, rows=observed_rows(obs), extra={"mode": mode})


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _merge_delta(ctx: SparkEngineContext, sdf: DataFrame, path: str, keys: list[str], opts: Mapping[str, str]) -> None:
    from delta.tables import DeltaTable

    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    builder = DeltaTable.forPath(ctx.spark, path).alias("t").merge(sdf.alias("s"), condition)
    if str(opts.get("mergeSchema", "")).lower() == "true":
        builder = builder.withSchemaEvolution()
    builder.whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()


def _delta_commit(ctx: SparkEngineContext, path: str, uri: str, rows: int | None, mode: str) -> WriteInfo:
    """The WriteInfo of the table's last commit (at ``path``): version, operation and its row metrics."""
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(ctx.spark, path).history(1).select("version", "operation", "operationMetrics").first()
    operation, metrics = str(last["operation"]), dict(last["operationMetrics"] or {})
    extra: dict[str, Any] = {"mode": mode, "operation": operation}
    if operation == "MERGE":
        rows = _int_or_none(metrics.get("numSourceRows"))
        for key in ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted"):
            if key in metrics:
                extra[key] = _int_or_none(metrics[key])
    elif rows is None:
        rows = _int_or_none(metrics.get("numOutputRows"))
    return WriteInfo(uri=uri, format="delta", rows=rows, version=int(last["version"]), extra=extra)


def read_delta(ctx: SparkEngineContext, source: str, **params: Any) -> DataFrame:
    """A Delta table (``version``/``versionAsOf`` or ``timestamp``/``timestampAsOf``: time travel)."""
    return read_files(ctx, source, "delta", params)


def write_delta(ctx: SparkEngineContext, sdf: DataFrame, target: str, **params: Any) -> WriteInfo:
    """A Delta table: ``mode`` overwrite | append | merge (upsert on ``merge_keys``/``keys``,
    creating the table when missing); ``WriteInfo.version`` is the version written."""
    from delta.tables import DeltaTable

    path, mode = hadoop.qualify(target), write_mode("delta", params)
    opts = options(params)
    if params.get("merge_schema"):
        opts["mergeSchema"] = "true"
    partition_by = split_csv(params.get("partition_by") or params.get("partitionBy"))
    keys = split_csv(params.get("merge_keys") or params.get("keys"))
    if mode == "merge" and not keys:
        raise ValueError("mode 'merge' needs 'merge_keys' (or 'keys')")
    rows: int | None = None
    try:
        if mode == "merge" and DeltaTable.isDeltaTable(ctx.spark, path):
            _merge_delta(ctx, sdf, path, keys, opts)
        else:
            observed, obs = observe(sdf)
            save_mode = "overwrite" if mode == "merge" else mode  # merge into nothing = create
            writer = observed.write.format("delta").mode(save_mode).options(**opts)
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.save(path)
            rows = observed_rows(obs)
    except ValueError:
        raise
    except Exception as exc:
        raise failure(ctx, exc, "delta", f"write {path}") from None
    return _delta_commit(ctx, path, hadoop.uri_of(target), rows, mode)


# --------------------------------------------------------------------------------------
# Catalog tables
# --------------------------------------------------------------------------------------


def read_table(ctx: SparkEngineContext, source: str, **params: Any) -> DataFrame:
    """A table of the session's catalog."""
    return ctx.spark.table(source)


def write_table(ctx: SparkEngineContext, sdf: DataFrame, target: str, **params: Any) -> WriteInfo:
    """Save ``sdf`` as a catalog table (``table_format``: its data source)."""
    mode = write_mode("table", params)
    observed, obs = observe(sdf)
    writer = observed.write.mode(mode).options(**options(params))
    if params.get("table_format"):
        writer = writer.format(str(params["table_format"]))
    writer.saveAsTable(target)
    return WriteInfo(uri=target, format="table", rows=observed_rows(obs), extra={"mode": mode})


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------


def _files_io(fmt: str) -> FormatIO:
    def read(ctx: SparkEngineContext, source: str, **params: Any) -> DataFrame:
        return read_files(ctx, source, fmt, params)

    def write(ctx: SparkEngineContext, sdf: DataFrame, target: str, **params: Any) -> WriteInfo:
        return write_files(ctx, sdf, target, fmt, params)

    return FormatIO(read, write)


def _jdbc_io(fmt: str) -> FormatIO:
    def read(ctx: SparkEngineContext, source: str, **params: Any) -> DataFrame:
        return read_jdbc(ctx, source, fmt, params)

    def write(ctx: SparkEngineContext, sdf: DataFrame, target: str, **params: Any) -> WriteInfo:
        return write_jdbc(ctx, sdf, target, fmt, write_mode(fmt, params), params)

    return FormatIO(read, write)


for _fmt in ("csv", "json", "jsonl", "parquet", "avro", "orc"):
    register(ENGINE, _fmt, _files_io(_fmt))
register(ENGINE, "delta", FormatIO(read_delta, write_delta))
register(ENGINE, "sqlite", _jdbc_io("sqlite"))
register(ENGINE, "sql", _jdbc_io("sql"))
register(ENGINE, "table", FormatIO(read_table, write_table))
