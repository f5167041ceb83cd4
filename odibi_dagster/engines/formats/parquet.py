"""Parquet on the pandas+DuckDB engine: files, globs and dataset directories.

Writing ``append`` to a file rewrites old + new rows atomically; to a directory it adds a
``part-<uuid>.parquet`` file. Overwriting a directory stages a new one and swaps it in.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

import duckdb

from odibi_dagster.config.templating import sql_literal
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats import duck

__all__ = ["read_parquet", "write_parquet"]

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


duck.register_format("parquet", read_parquet, write_parquet, _PARQUET_READ_PARAMS, _PARQUET_WRITE_PARAMS)
