"""Parquet on the pandas+DuckDB engine: files, globs and dataset directories.

Writing ``append`` to a file rewrites old + new rows atomically; to a directory it adds a
``part-<uuid>.parquet`` file. Overwriting a directory stages a new one and swaps it in.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from odibi_dagster.config.templating import sql_literal
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import SampleRows, Snapshot, WriteInfo
from odibi_dagster.engines.formats import duck

__all__ = ["duckdb_parquet_snapshot", "note_duckdb_written", "read_parquet", "write_parquet"]

_PARQUET_READ_PARAMS = {
    "union_by_name",
    "filename",
    "hive_partitioning",
    "binary_as_string",
    "file_row_number",
    "columns",
    "nrows",
    "engine",  # pandas' engine="pyarrow" in ODIBI configs: meaningless here, accepted
}
_PARQUET_WRITE_PARAMS = {"mode", "compression", "row_group_size", "index", "engine"}


def read_parquet(conn: duckdb.DuckDBPyConnection, source: str | list[str], **params: Any) -> duckdb.DuckDBPyRelation:
    """Parquet file(s), globs or a directory through DuckDB's ``read_parquet``."""
    duck.check_params("parquet", "reader", params, _PARQUET_READ_PARAMS)
    named: dict[str, Any] = {}
    columns = limit = None
    for key, value in params.items():
        if key in duck.COMMON_PARAMS or key == "engine":
            continue
        if key == "columns":
            columns = duck.as_list(value)
        elif key == "nrows":
            limit = int(value)
        else:
            named[key] = value
    sources = [source] if isinstance(source, str) else list(source)
    path_list = [duck.scan_path(conn, s, "parquet") for s in sources]
    target: Any = path_list[0] if len(path_list) == 1 else path_list
    if len(path_list) > 1:
        named.setdefault("union_by_name", True)
    return duck.select(conn, f"read_parquet({duck.call_args(target, named)})", columns, limit)


def write_parquet(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any
) -> WriteInfo:
    """Parquet through DuckDB's writer (see the module docstring for append and overwrite)."""
    params, mode = duck.writer_params("parquet", params, _PARQUET_WRITE_PARAMS)
    params.pop("engine", None)
    opts: dict[str, Any] = {"format": "parquet", **params}
    target = str(target)
    is_dir = paths.isdir(target) or target.endswith("/")
    if is_dir and mode == "append":
        rows = duck.replace_file(conn, rel, paths.join(target, f"part-{uuid.uuid4().hex}.parquet"), opts)
    elif is_dir:
        rows = _overwrite_dir(conn, rel, target, opts)
    elif mode == "append":
        rows = duck.union_rewrite(conn, rel, target, lambda p: f"read_parquet({sql_literal(p)})", opts)
    else:
        rows = duck.replace_file(conn, rel, target, opts)
    return duck.write_info("parquet", target, rows, mode)


def _overwrite_dir(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, opts: Mapping[str, Any]
) -> int:
    """Replace a Parquet dataset directory with one file: stage a sibling dir, then swap."""
    if paths.is_remote(target):
        fs = paths.fs_for(target)
        part = paths.join(target, f"part-{uuid.uuid4().hex}.parquet")
        rows = duck.replace_file(conn, rel, part, opts)
        # Blob stores have no directory rename; old parts go once the new one is in place.
        for f in fs.find(target):
            if not f.rstrip("/").endswith(paths.basename(part)):
                fs.rm(f)
        return rows
    target = os.path.abspath(paths.local_path(target.rstrip("/")))
    paths.remove_stale_temps(target)
    stage = os.path.join(os.path.dirname(target), paths.temp_name(target))
    backup = stage + ".old"
    os.makedirs(stage)
    try:
        rows = duck.copy_to(conn, rel, os.path.join(stage, "part-0.parquet"), opts)
        if os.path.exists(target):
            os.replace(target, backup)
        os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if os.path.exists(backup) and not os.path.exists(target):
            os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return rows


# Arrow's name for each flat Parquet column type (physical type, converted type) that Arrow reads
# without an Arrow schema stored in the file: what pyarrow reports for a file DuckDB wrote.
_ARROW_NAMES = {
    ("BOOLEAN", None): "bool",
    ("INT32", None): "int32",
    ("INT32", "INT_8"): "int8",
    ("INT32", "INT_16"): "int16",
    ("INT32", "INT_32"): "int32",
    ("INT32", "UINT_8"): "uint8",
    ("INT32", "UINT_16"): "uint16",
    ("INT32", "UINT_32"): "uint32",
    ("INT32", "DATE"): "date32[day]",
    ("INT64", None): "int64",
    ("INT64", "INT_64"): "int64",
    ("INT64", "UINT_64"): "uint64",
    ("INT64", "TIMESTAMP_MICROS"): "timestamp[us]",
    ("INT64", "TIMESTAMP_MILLIS"): "timestamp[ms]",
    ("FLOAT", None): "float",
    ("DOUBLE", None): "double",
    ("BYTE_ARRAY", None): "binary",
    ("BYTE_ARRAY", "UTF8"): "string",
}


def _arrow_name(physical: Any, converted: Any, logical: Any, scale: Any, precision: Any) -> str | None:
    """The Arrow type name of one flat Parquet column, ``None`` when not simple enough to name here."""
    if converted == "DECIMAL" and precision is not None and int(precision) <= 38:
        return f"decimal128({int(precision)}, {int(scale or 0)})"
    if logical is not None and "isAdjustedToUTC=1" in str(logical):
        return None  # a zoned timestamp: Arrow names its zone
    if logical is not None and converted is None:
        return None  # a logical type without a converted one (nanoseconds, UUID...): let Arrow say
    return _ARROW_NAMES.get((physical, converted))


def _file_schema(conn: duckdb.DuckDBPyConnection, path: str) -> tuple[tuple[str, str], ...] | None:
    """A DuckDB-readable Parquet file's schema as Arrow names it, ``None`` when Arrow would name
    it otherwise: the file carries Arrow's own schema (pyarrow wrote it), or a column is nested or
    of a type :data:`_ARROW_NAMES` does not cover."""
    if conn.execute("SELECT 1 FROM parquet_kv_metadata(?) WHERE key = 'ARROW:schema'", [path]).fetchall():
        return None
    rows = conn.execute(
        "SELECT name, type, converted_type, logical_type, num_children, scale, precision FROM parquet_schema(?)",
        [path],
    ).fetchall()
    out = []
    for name, physical, converted, logical, children, scale, precision in rows[1:]:  # rows[0]: the root
        arrow = None if children else _arrow_name(physical, converted, logical, scale, precision)
        if arrow is None:
            return None
        out.append((str(name), arrow))
    return tuple(out) if len(out) == (rows[0][4] if rows else -1) else None


# Arrow's name for the DuckDB column types a file DuckDB wrote keeps as they are (timestamps
# are not among them: a TIMESTAMP column may come from a file of milliseconds).
_DUCK_ARROW_NAMES = {
    "BOOLEAN": "bool",
    "TINYINT": "int8",
    "SMALLINT": "int16",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "UTINYINT": "uint8",
    "USMALLINT": "uint16",
    "UINTEGER": "uint32",
    "UBIGINT": "uint64",
    "FLOAT": "float",
    "DOUBLE": "double",
    "VARCHAR": "string",
    "DATE": "date32[day]",
    "BLOB": "binary",
}
# Parquet files this process wrote with DuckDB (see note_duckdb_written): path -> (stamp, rows).
_WRITTEN: dict[str, tuple[tuple[int, int, int], int]] = {}


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def note_duckdb_written(path: str, rows: int) -> None:
    """Remember that DuckDB just wrote ``rows`` rows to the local Parquet file ``path``: its
    snapshot then needs no footer queries (no Arrow schema in it, its row count known)."""
    stamp = _stamp(path)
    if stamp is None:
        return
    if path not in _WRITTEN and len(_WRITTEN) >= 1024:
        _WRITTEN.pop(next(iter(_WRITTEN)))
    _WRITTEN[path] = (stamp, int(rows))


def _duck_arrow_name(kind: Any) -> str | None:
    if kind.id == "decimal":
        precision, scale = (int(v) for _, v in kind.children)
        return f"decimal128({precision}, {scale})"
    return _DUCK_ARROW_NAMES.get(str(kind))


def _head(conn: duckdb.DuckDBPyConnection, files: Sequence[str], n: int) -> duckdb.DuckDBPyRelation:
    scan = sql_literal(files[0]) if len(files) == 1 else sql_literal(list(files), lists="array")
    return conn.sql(f"SELECT * FROM read_parquet({scan}) LIMIT {max(int(n), 0)}")


def _written_snapshot(conn: duckdb.DuckDBPyConnection, files: Sequence[str], sample_rows: int) -> Snapshot | None:
    """The snapshot of files :func:`note_duckdb_written` knows: one ``LIMIT`` query, no footer reads."""
    known = [_WRITTEN.get(f) for f in files]
    counts = [k[1] for k, f in zip(known, files, strict=True) if k is not None and k[0] == _stamp(f)]
    if len(counts) != len(files):
        return None
    rel = _head(conn, files, sample_rows)
    names = [_duck_arrow_name(t) for t in rel.types]
    if any(n is None for n in names):
        return None
    types = tuple(str(n) for n in names)
    schema = tuple(zip(rel.columns, types, strict=True))
    sample = SampleRows(tuple(rel.columns), tuple(rel.fetchall()), types) if sample_rows > 0 else None
    return Snapshot(row_count=sum(counts), schema=schema, sample=sample)


def duckdb_parquet_snapshot(conn: duckdb.DuckDBPyConnection, files: Sequence[str], sample_rows: int) -> Snapshot | None:
    """Rows, schema (Arrow's names) and a sample of local Parquet ``files`` read by DuckDB alone:
    counts from the footers (or from the write, for files this process wrote), the sample from
    the first rows, no pandas or pyarrow. ``None`` when the files need Arrow to describe them
    exactly (see :func:`_file_schema`) or differ in schema."""
    snap = _written_snapshot(conn, files, sample_rows)
    if snap is not None:
        return snap
    schemas = {_file_schema(conn, f) for f in files}
    if len(schemas) != 1 or None in schemas:
        return None
    schema = schemas.pop()
    assert schema is not None
    counts = conn.execute("SELECT num_rows FROM parquet_file_metadata(?)", [list(files)]).fetchall()
    sample = None
    if sample_rows > 0:
        rows = tuple(_head(conn, files, sample_rows).fetchall())
        sample = SampleRows(tuple(c for c, _ in schema), rows, tuple(t for _, t in schema))
    return Snapshot(row_count=sum(int(n) for (n,) in counts), schema=schema, sample=sample)


duck.register_format("parquet", read_parquet, write_parquet, _PARQUET_READ_PARAMS, _PARQUET_WRITE_PARAMS)
