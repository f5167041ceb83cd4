"""What the pandas+DuckDB readers and writers share: param checks, DuckDB table-function
calls, ``COPY ... TO`` and the atomic append and rewrite of existing files.

Every reader returns a lazy :class:`duckdb.DuckDBPyRelation`; every writer streams one out
through DuckDB or Arrow record batches, so a 20M-row CSV -> Parquet never passes through
pandas. File writes are atomic (see :func:`paths.atomic_output`):

* line formats (CSV, JSON lines) append by copying the old file to a temp file, adding the
  new rows, then replacing the target;
* whole-file formats (a JSON array, a Parquet file) append by rewriting old + new rows
  (``UNION ALL BY NAME``) into a temp file which then replaces the target.
"""

from __future__ import annotations

import contextlib
import glob as globlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import duckdb

from odibi_dagster.config.templating import quote_ident, sql_literal
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats.registry import FormatIO, Reader, Writer, register

ENGINE = "pandas"

# Params consumed by the dispatcher itself, accepted by every reader / writer.
COMMON_PARAMS = frozenset({"format", "source_type"})
# Compression settings that leave a file appendable byte by byte.
UNCOMPRESSED = (None, "none", "auto")

_PANDAS_TYPES = {
    "int": "BIGINT",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "int16": "SMALLINT",
    "int8": "TINYINT",
    "float": "DOUBLE",
    "float64": "DOUBLE",
    "float32": "FLOAT",
    "str": "VARCHAR",
    "string": "VARCHAR",
    "object": "VARCHAR",
    "bool": "BOOLEAN",
    "boolean": "BOOLEAN",
    "datetime64[ns]": "TIMESTAMP",
    "datetime64[us]": "TIMESTAMP",
    "datetime": "TIMESTAMP",
    "date": "DATE",
}


# --------------------------------------------------------------------------- params


def register_format(
    fmt: str,
    reader: Reader,
    writer: Writer,
    reader_params: Iterable[str] | None = None,
    writer_params: Iterable[str] | None = None,
) -> None:
    """Register this engine's reader and writer of ``fmt`` (params checked before a run:
    the ones given, plus the dispatcher's ``format``/``source_type``)."""

    def accepted(names: Iterable[str] | None) -> frozenset[str] | None:
        return None if names is None else frozenset({*names, *COMMON_PARAMS})

    register(ENGINE, fmt, FormatIO(reader, writer, accepted(reader_params), accepted(writer_params)))


def check_params(fmt: str, kind: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """ValueError naming every param of ``params`` that ``fmt``'s ``kind`` does not accept."""
    allowed_set = set(allowed) | COMMON_PARAMS
    unknown = sorted(k for k in params if k not in allowed_set)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(
            f"unknown {fmt} {kind} param{plural} {', '.join(repr(n) for n in unknown)}; "
            f"supported: {', '.join(sorted(allowed_set))}"
        )


def as_list(value: Any) -> list[str]:
    """A param that may be one name or several, as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def duck_types(dtypes: Mapping[str, Any]) -> dict[str, str]:
    """pandas dtype names (``int64``, ``str``...) as DuckDB types; DuckDB names pass through."""
    out = {}
    for col, t in dtypes.items():
        name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
        out[str(col)] = _PANDAS_TYPES.get(name.lower(), name)
    return out


def take_mode(fmt: str, params: Mapping[str, Any], modes: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """Writer ``params`` without the dispatcher's, ``mode`` and ``index``; and the write mode."""
    out = {k: v for k, v in params.items() if k not in COMMON_PARAMS}
    mode = str(out.pop("mode", None) or "overwrite").lower()
    if mode not in modes:
        raise ValueError(f"{fmt} writer: mode {mode!r} is not supported; use one of {', '.join(modes)}")
    # ODIBI configs often carry pandas' index=False; there is no index to write here.
    if out.pop("index", False):
        raise ValueError(f"{fmt} writer: index=True is not supported (frames have no index)")
    return out, mode


def writer_params(
    fmt: str, params: Mapping[str, Any], allowed: Iterable[str], modes: tuple[str, ...] = ("overwrite", "append")
) -> tuple[dict[str, Any], str]:
    """Checked writer params (see :func:`take_mode`) and the write mode."""
    check_params(fmt, "writer", params, allowed)
    return take_mode(fmt, params, modes)


# --------------------------------------------------------------------------- reading


def call_args(path: Any, named: Mapping[str, Any]) -> str:
    """``'path', key = value, ...``: the arguments of a DuckDB table function (lists as lists)."""
    return ", ".join(
        [sql_literal(path, lists="array")] + [f"{k} = {sql_literal(v, lists='array')}" for k, v in named.items()]
    )


def ensure_filesystem(conn: duckdb.DuckDBPyConnection, path: str | Iterable[str]) -> None:
    """Register the fsspec filesystem of a remote ``path`` with DuckDB (once per protocol)."""
    items = [path] if isinstance(path, str) else list(path)
    for p in items:
        if not paths.is_remote(p):
            continue
        proto = paths.protocol_of(p)
        fs = paths.fs_for(p)
        protos = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
        # DuckDB names a registered fsspec filesystem after its first protocol.
        if protos[0] not in conn.list_filesystems() and proto not in conn.list_filesystems():
            conn.register_filesystem(fs)


def scan_path(conn: duckdb.DuckDBPyConnection, source: str, ext: str) -> str:
    """The path DuckDB should scan for ``source``: a directory becomes a recursive glob of its
    ``*.<ext>`` files. A missing local input raises a clear FileNotFoundError instead of
    DuckDB's IO error; a remote one has its filesystem registered."""
    path = paths.local_path(str(source))
    if not paths.has_glob(path) and paths.isdir(path):
        path = paths.join(path, "**", f"*.{ext}")
    if paths.is_remote(path):
        ensure_filesystem(conn, path)
    elif paths.has_glob(path):
        if not globlib.glob(path, recursive=True):
            raise FileNotFoundError(f"no files match {path!r}")
    elif not os.path.exists(path):
        raise FileNotFoundError(f"no such file or directory: {path!r}")
    return path


def select(
    conn: duckdb.DuckDBPyConnection,
    from_sql: str,
    columns: list[str] | None = None,
    limit: int | None = None,
    parse_dates: list[str] | None = None,
) -> duckdb.DuckDBPyRelation:
    """``SELECT <columns> FROM <from_sql> LIMIT n`` as a lazy relation (``parse_dates`` cast)."""
    proj = ", ".join(quote_ident(c) for c in columns) if columns else "*"
    if parse_dates:
        repl = ", ".join(f"TRY_CAST({quote_ident(c)} AS TIMESTAMP) AS {quote_ident(c)}" for c in parse_dates)
        proj = f"{proj} REPLACE ({repl})" if proj == "*" else proj
    query = f"SELECT {proj} FROM {from_sql}"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return conn.sql(query)


def project(rel: duckdb.DuckDBPyRelation, params: Mapping[str, Any]) -> duckdb.DuckDBPyRelation:
    """``rel`` narrowed to the ``columns`` and ``nrows`` params (readers without a SQL scan)."""
    columns = as_list(params.get("columns"))
    if columns:
        rel = rel.select(*[quote_ident(c) for c in columns])
    if params.get("nrows") is not None:
        rel = rel.limit(int(params["nrows"]))
    return rel


# --------------------------------------------------------------------------- writing


def copy_to(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, path: str, options: Mapping[str, Any]
) -> int:
    """Stream ``rel`` into ``path`` with DuckDB's ``COPY ... TO`` and return the row count."""
    view = f"__odibi_copy_{uuid.uuid4().hex}"
    # Registering the relation lets COPY run its plan in this connection, in parallel.
    conn.register(view, rel)
    try:
        opts = ", ".join(f"{k.upper()} {sql_literal(v, lists='array')}" for k, v in options.items())
        # fetchall() completes the result: DuckDB refuses new work on a pending one.
        out = conn.execute(f"COPY (SELECT * FROM {quote_ident(view)}) TO {sql_literal(path)} ({opts})").fetchall()
        return int(out[0][0]) if out else 0
    finally:
        conn.unregister(view)


def replace_file(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, options: Mapping[str, Any]
) -> int:
    """Write ``rel`` to a temp file beside ``target`` and swap it in; returns the row count."""
    with paths.atomic_output(target) as tmp:
        return copy_to(conn, rel, tmp, options)


def write_info(fmt: str, target: str, rows: int, mode: str, **extra: Any) -> WriteInfo:
    """The :class:`WriteInfo` of a file write."""
    return WriteInfo(uri=str(target), format=fmt, rows=rows, extra={"mode": mode, **extra})


@contextlib.contextmanager
def _existing_local_copy(target: str) -> Iterator[str | None]:
    """A local path holding the current content of ``target`` (``None`` if it doesn't exist)."""
    if not paths.exists(target):
        yield None
        return
    if not paths.is_remote(target):
        yield paths.local_path(target)
        return
    tmp_dir = tempfile.mkdtemp(prefix="odibi-old-")
    try:
        local = os.path.join(tmp_dir, paths.basename(target))
        paths.fs_for(target).get(target, local)
        yield local
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _append_bytes(dst: str, src: str) -> None:
    """Append file ``src`` to ``dst``, making sure ``dst`` ends with a newline first."""
    with open(dst, "rb+") as out:
        out.seek(0, os.SEEK_END)
        if out.tell() > 0:
            out.seek(-1, os.SEEK_END)
            if out.read(1) != b"\n":
                out.write(b"\n")
        with open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)


def concat_append(
    conn: duckdb.DuckDBPyConnection,
    rel: duckdb.DuckDBPyRelation,
    target: str,
    copy_opts: dict[str, Any],
    fmt: str,
    align: Callable[[duckdb.DuckDBPyRelation, str], tuple[duckdb.DuckDBPyRelation, dict[str, Any]]] | None = None,
) -> int:
    """Atomic append for line formats: old bytes + new rows -> temp -> replace.

    ``align(rel, old_file)`` may reorder the new rows to the existing file and return the
    options to write them with (CSV: no second header).
    """
    if copy_opts.get("compression") not in UNCOMPRESSED:
        raise ValueError(f"{fmt} writer: mode='append' cannot be combined with compression")
    with _existing_local_copy(target) as old, paths.atomic_output(target) as tmp:
        if old is None:
            return copy_to(conn, rel, tmp, copy_opts)
        shutil.copyfile(old, tmp)
        part = tmp + ".part"
        try:
            opts = dict(copy_opts)
            if align is not None:
                rel, opts = align(rel, old)
            rows = copy_to(conn, rel, part, opts)
            _append_bytes(tmp, part)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(part)
        return rows


def union_rewrite(
    conn: duckdb.DuckDBPyConnection,
    rel: duckdb.DuckDBPyRelation,
    target: str,
    reader_sql: Callable[[str], str],
    copy_opts: dict[str, Any],
) -> int:
    """Atomic append for whole-file formats: old rows UNION ALL BY NAME new rows -> replace."""
    with _existing_local_copy(target) as old, paths.atomic_output(target) as tmp:
        if old is None:
            return copy_to(conn, rel, tmp, copy_opts)
        view = f"__odibi_new_{uuid.uuid4().hex}"
        conn.register(view, rel)
        try:
            old_rows = int(conn.sql(f"SELECT count(*) FROM {reader_sql(old)}").fetchall()[0][0])
            combined = conn.sql(f"SELECT * FROM {reader_sql(old)} UNION ALL BY NAME SELECT * FROM {view}")
            new_rows = copy_to(conn, combined, tmp, copy_opts) - old_rows
        finally:
            conn.unregister(view)
        return new_rows
