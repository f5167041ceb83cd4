"""Readers and writers of the pandas+DuckDB engine.

Every reader returns a lazy :class:`duckdb.DuckDBPyRelation`; every writer takes one
and streams it out through DuckDB (``COPY ... TO``) or Arrow record batches, so a
20M-row CSV -> Parquet never passes through pandas.

Formats: ``csv`` (and ``tsv``), ``json`` (a records array; reading auto-detects JSON
lines too), ``jsonl``, ``parquet``, ``delta``, ``sqlite`` and ``sql`` (any SQLAlchemy
URL). The format comes from ``params["format"]``, ODIBI's ``params["source_type"]``,
a ``connection_string`` param, a database URL, the file extension (globs allowed),
or a directory's content (``_delta_log`` -> delta).

Write modes: ``overwrite`` (default) and ``append`` for every writer, plus ``merge``
for Delta (``merge_keys``). File writes are atomic (see :func:`paths.atomic_output`):

* CSV / JSONL append: the old file is copied to a temp file, the new rows are added
  (CSV without a repeated header, columns reordered to the existing header), then the
  temp file replaces the target.
* JSON append and Parquet append to a *file*: old + new rows are rewritten into a temp
  file (``UNION ALL BY NAME``) which then replaces the target.
* Parquet append to a *directory*: an additional ``part-<uuid>.parquet`` file is
  written atomically into it. Overwrite of a directory stages a new directory and
  swaps it in.
* Delta and SQL writes are transactional by themselves (one Delta commit; one
  database transaction), so a failure leaves the previous table version.
"""

from __future__ import annotations

import contextlib
import glob as globlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from odibi_dagster.config.templating import quote_ident, sql_literal
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import WriteInfo

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("csv", "json", "jsonl", "parquet", "delta", "sqlite", "sql")

# format / source_type spellings accepted from configs (ODIBI's source_type included).
_FORMAT_ALIASES: dict[str, str] = {
    "csv": "csv",
    "tsv": "csv",
    "text": "csv",
    "json": "json",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "json_lines": "jsonl",
    "jsonlines": "jsonl",
    "parquet": "parquet",
    "pq": "parquet",
    "delta": "delta",
    "deltalake": "delta",
    "delta_lake": "delta",
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "sql": "sql",
    "database": "sql",
    "db": "sql",
    "sqlalchemy": "sql",
    "postgres": "sql",
    "postgresql": "sql",
    "mysql": "sql",
    "mssql": "sql",
    "sqlserver": "sql",
    "azure_sql": "sql",
}

_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
}

_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd", ".bz2", ".xz", ".snappy", ".lz4")

# URL schemes that are databases (SQLAlchemy dialects), not filesystems.
_SQL_SCHEMES = frozenset(
    {
        "sqlite",
        "postgresql",
        "postgres",
        "mysql",
        "mariadb",
        "mssql",
        "oracle",
        "redshift",
        "snowflake",
        "duckdb",
        "trino",
        "presto",
        "bigquery",
        "databricks",
        "hana",
        "db2",
        "firebird",
        "sybase",
        "teradata",
        "clickhouse",
        "cockroachdb",
    }
)

# Params consumed by the dispatcher itself, accepted by every reader / writer.
_COMMON_PARAMS = frozenset({"format", "source_type"})


# --------------------------------------------------------------------------- helpers


def _call_args(path: Any, named: Mapping[str, Any]) -> str:
    """``'path', key = value, ...``: the arguments of a DuckDB table function (lists as lists)."""
    return ", ".join(
        [sql_literal(path, lists="array")] + [f"{k} = {sql_literal(v, lists='array')}" for k, v in named.items()]
    )


def _unknown(fmt: str, kind: str, names: Iterable[str], allowed: Iterable[str]) -> ValueError:
    names = sorted(names)
    plural = "s" if len(names) > 1 else ""
    return ValueError(
        f"unknown {fmt} {kind} param{plural} {', '.join(repr(n) for n in names)}; "
        f"supported: {', '.join(sorted(set(allowed)))}"
    )


def _check_params(fmt: str, kind: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed_set = set(allowed) | _COMMON_PARAMS
    unknown = [k for k in params if k not in allowed_set]
    if unknown:
        raise _unknown(fmt, kind, unknown, allowed_set)


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


def _has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _strip_compression(name: str) -> str:
    lower = name.lower()
    for suf in _COMPRESSION_SUFFIXES:
        if lower.endswith(suf):
            return name[: -len(suf)]
    return name


def _ext_format(path: str) -> str | None:
    name = _strip_compression(paths.basename(path))
    return _EXTENSIONS.get(os.path.splitext(name)[1].lower())


def _is_sql_url(source: str) -> bool:
    proto = paths.protocol_of(source)
    if proto is None:
        return False
    return proto.split("+", 1)[0] in _SQL_SCHEMES or "+" in proto


def _dir_format(path: str) -> str | None:
    """Format of a dataset directory: delta when it has ``_delta_log``, else its files'."""
    if not paths.isdir(path):
        return None
    if paths.exists(paths.join(path, "_delta_log")):
        return "delta"
    if paths.is_remote(path):
        found = paths.fs_for(path).find(path)
    else:
        found = (os.path.join(root, f) for root, _, files in os.walk(path) for f in files)
    for f in found:
        base = paths.basename(f)
        if base.startswith((".", "_")):
            continue
        fmt = _ext_format(f)
        if fmt in ("csv", "json", "jsonl", "parquet"):
            return fmt
    return None


def resolve_format(source: str, params: Mapping[str, Any]) -> str:
    """The reader/writer format for ``source`` given ``params`` (see module docstring)."""
    explicit = params.get("format") or params.get("source_type")
    if explicit:
        key = str(explicit).lower().strip()
        if key not in _FORMAT_ALIASES:
            raise ValueError(f"unknown format {explicit!r}; supported: {', '.join(sorted(set(_FORMAT_ALIASES)))}")
        return _FORMAT_ALIASES[key]
    if params.get("connection_string"):
        return "sql"
    source = str(source)
    if _is_sql_url(source):
        return "sql"
    # The extension first: it costs no filesystem call (remote listings are slow).
    by_ext = _ext_format(source)
    if by_ext:
        return by_ext
    if not _has_glob(source):
        by_dir = _dir_format(source)
        if by_dir:
            return by_dir
    raise ValueError(
        f"cannot infer the format of {source!r} from its extension or content; "
        f"pass format= (one of {', '.join(FORMATS)})"
    )


def _source_path(source: str, fmt: str) -> str:
    """The path DuckDB should scan: directories become a recursive glob of their files."""
    path = paths.local_path(str(source))
    if not _has_glob(path) and paths.isdir(path) and fmt in ("csv", "json", "jsonl", "parquet"):
        ext = {"csv": "csv", "json": "json", "jsonl": "json*", "parquet": "parquet"}[fmt]
        return paths.join(path, "**", f"*.{ext}")
    return path


def _check_exists(path: str) -> None:
    """A clear FileNotFoundError instead of DuckDB's IO error for missing local inputs."""
    if paths.is_remote(path):
        return
    if _has_glob(path):
        if not globlib.glob(path, recursive=True):
            raise FileNotFoundError(f"no files match {path!r}")
    elif not os.path.exists(path):
        raise FileNotFoundError(f"no such file or directory: {path!r}")


def _finish(
    conn: duckdb.DuckDBPyConnection,
    from_sql: str,
    columns: list[str] | None = None,
    limit: int | None = None,
    parse_dates: list[str] | None = None,
) -> duckdb.DuckDBPyRelation:
    proj = ", ".join(quote_ident(c) for c in columns) if columns else "*"
    if parse_dates:
        repl = ", ".join(f"TRY_CAST({quote_ident(c)} AS TIMESTAMP) AS {quote_ident(c)}" for c in parse_dates)
        proj = f"{proj} REPLACE ({repl})" if proj == "*" else proj
    query = f"SELECT {proj} FROM {from_sql}"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return conn.sql(query)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


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


def _duck_types(dtypes: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for col, t in dtypes.items():
        name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
        out[str(col)] = _PANDAS_TYPES.get(name.lower(), name)
    return out


def _header_flag(value: Any) -> bool:
    # pandas spells "first row is the header" as header=0 and "no header" as header=None.
    if value is None or value is False:
        return False
    if value is True or value == 0 or value == "infer":
        return True
    raise ValueError(f"csv header={value!r} is not supported; use true/false (or 0/None)")


# --------------------------------------------------------------------------- readers

_CSV_PASSTHROUGH = {
    "compression",
    "all_varchar",
    "sample_size",
    "ignore_errors",
    "union_by_name",
    "filename",
    "hive_partitioning",
    "auto_detect",
    "dateformat",
    "timestampformat",
    "decimal_separator",
    "null_padding",
    "new_line",
    "comment",
    "normalize_names",
    "max_line_size",
    "parallel",
    "strict_mode",
    "allow_quoted_nulls",
    "encoding",
    "quote",
    "escape",
    "skip",
    "nullstr",
    "names",
    "types",
    "auto_type_candidates",
}
# ODIBI's pandas engine reads CSV with ``pd.read_csv``: numbers and booleans are inferred,
# dates and times stay text unless ``parse_dates`` asks. DuckDB's sniffer would also detect
# DATE/TIME/TIMESTAMP columns, so the candidates are limited to pandas' (pass
# ``auto_type_candidates`` to widen them).
_PANDAS_CSV_TYPES = ["BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR"]
_CSV_ALIASES = {
    "delimiter": "delim",
    "sep": "delim",
    "delim": "delim",
    "quotechar": "quote",
    "escapechar": "escape",
    "skiprows": "skip",
    "na_values": "nullstr",
    "date_format": "dateformat",
    "timestamp_format": "timestampformat",
    "column_names": "names",
}
_CSV_READ_PARAMS = (
    _CSV_PASSTHROUGH
    | set(_CSV_ALIASES)
    | {"header", "dtype", "columns", "usecols", "nrows", "parse_dates", "keep_default_na"}
)
# pandas' default ``na_values`` (``pandas._libs.parsers.STR_NA_VALUES``), which ODIBI's pandas
# engine reads as nulls: the same file gives the same COUNT(col) on both. ``na_values`` adds to
# them; ``keep_default_na: false`` keeps only the ones given (empty fields stay null).
PANDAS_NA_VALUES = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)


def csv_null_tokens(params: Mapping[str, Any]) -> list[str]:
    """The strings a CSV read with ``params`` takes for null, on both engines (see above)."""
    given = params.get("na_values", params.get("nullstr"))
    extra = [] if given is None else [str(v) for v in _as_list(given)]
    keep_default = params.get("keep_default_na", True) not in (False, "false", "False", 0)
    tokens = [*(PANDAS_NA_VALUES if keep_default else ("",)), *extra]
    return list(dict.fromkeys(tokens))


def read_csv(
    conn: duckdb.DuckDBPyConnection, source: str, *, tsv: bool = False, **params: Any
) -> duckdb.DuckDBPyRelation:
    """CSV through DuckDB's ``read_csv`` (parallel, globs). Accepts DuckDB option names
    and the usual pandas spellings (``sep``, ``header``, ``usecols``, ``nrows``, ``dtype``...)."""
    _check_params("csv", "reader", params, _CSV_READ_PARAMS)
    named: dict[str, Any] = {"delim": "\t"} if tsv else {}
    columns = limit = parse_dates = None
    named["nullstr"] = csv_null_tokens(params)
    for key, value in params.items():
        if key in _COMMON_PARAMS or key in ("na_values", "nullstr", "keep_default_na"):
            continue
        if key == "header":
            named["header"] = _header_flag(value)
        elif key in ("dtype", "types"):
            named["types"] = _duck_types(value) if isinstance(value, Mapping) else value
        elif key in ("columns", "usecols"):
            columns = _as_list(value)
        elif key == "nrows":
            limit = int(value)
        elif key == "parse_dates":
            parse_dates = _as_list(value)
        else:
            named[_CSV_ALIASES.get(key, key)] = value
    if not named.get("all_varchar") and named.get("auto_detect", True) is not False:
        named.setdefault("auto_type_candidates", _PANDAS_CSV_TYPES)
    path = _source_path(source, "csv")
    _check_exists(path)
    ensure_filesystem(conn, path)
    args = _call_args(path, named)
    return _finish(conn, f"read_csv({args})", columns, limit, parse_dates)


_JSON_PASSTHROUGH = {
    "compression",
    "dateformat",
    "timestampformat",
    "maximum_object_size",
    "records",
    "sample_size",
    "union_by_name",
    "filename",
    "ignore_errors",
    "hive_partitioning",
    "maximum_depth",
}
_JSON_READ_PARAMS = _JSON_PASSTHROUGH | {
    "orient",
    "columns",
    "dtype",
    "types",
    "nrows",
    "date_format",
    "timestamp_format",
}


def read_json(
    conn: duckdb.DuckDBPyConnection, source: str, *, lines: bool | None = None, **params: Any
) -> duckdb.DuckDBPyRelation:
    """JSON (records array, auto-detected) or JSON lines through DuckDB's ``read_json``."""
    fmt = "jsonl" if lines else "json"
    _check_params(fmt, "reader", params, _JSON_READ_PARAMS)
    named: dict[str, Any] = {"format": "newline_delimited" if lines else "auto"}
    columns = limit = None
    for key, value in params.items():
        if key in _COMMON_PARAMS:
            continue
        if key == "orient":
            if value not in ("records", None):
                raise ValueError(f"json orient={value!r} is not supported; only 'records'")
        elif key in ("dtype", "types"):
            named["columns"] = _duck_types(value)
        elif key == "columns":
            columns = _as_list(value)
        elif key == "nrows":
            limit = int(value)
        elif key == "date_format":
            named["dateformat"] = value
        elif key == "timestamp_format":
            named["timestampformat"] = value
        else:
            named[key] = value
    path = _source_path(source, fmt)
    _check_exists(path)
    ensure_filesystem(conn, path)
    args = _call_args(path, named)
    return _finish(conn, f"read_json({args})", columns, limit)


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


def read_parquet(conn: duckdb.DuckDBPyConnection, source: str | list[str], **params: Any) -> duckdb.DuckDBPyRelation:
    """Parquet file(s), globs or a directory through DuckDB's ``read_parquet``."""
    _check_params("parquet", "reader", params, _PARQUET_READ_PARAMS)
    named: dict[str, Any] = {}
    columns = limit = None
    for key, value in params.items():
        if key in _COMMON_PARAMS or key == "engine":
            continue
        if key == "columns":
            columns = _as_list(value)
        elif key == "nrows":
            limit = int(value)
        else:
            named[key] = value
    sources = [source] if isinstance(source, str) else list(source)
    path_list = [_source_path(s, "parquet") for s in sources]
    for p in path_list:
        _check_exists(p)
    ensure_filesystem(conn, path_list)
    target: Any = path_list[0] if len(path_list) == 1 else path_list
    if len(path_list) > 1:
        named.setdefault("union_by_name", True)
    args = _call_args(target, named)
    return _finish(conn, f"read_parquet({args})", columns, limit)


_DELTA_READ_PARAMS = {"version", "timestamp", "columns", "nrows", "storage_options"}


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
    """A Delta table (``version`` / ``timestamp`` for time travel) as a lazy relation over
    its Arrow dataset (DuckDB pushes projections and filters into the scan)."""
    _check_params("delta", "reader", params, _DELTA_READ_PARAMS)
    if params.get("version") is not None and params.get("timestamp") is not None:
        raise ValueError("delta reader: pass either version or timestamp, not both")
    ds = open_delta_dataset(
        source,
        version=None if params.get("version") is None else int(params["version"]),
        timestamp=params.get("timestamp"),
        storage_options=params.get("storage_options"),
    )
    rel = conn.from_arrow(ds)
    columns = _as_list(params.get("columns")) or None
    if columns:
        rel = rel.select(*[quote_ident(c) for c in columns])
    if params.get("nrows") is not None:
        rel = rel.limit(int(params["nrows"]))
    return rel


# Credentials for a SQLAlchemy URL that holds none (ODIBI's get_secret: {"secret": NAME} values).
_SQL_CREDENTIAL_PARAMS = {"user", "username", "password"}
_SQL_READ_PARAMS = {"table", "query", "schema", "columns", "nrows", "connection_string", "sql", *_SQL_CREDENTIAL_PARAMS}


def _sqlite_url(path: str) -> str:
    return "sqlite:///" + os.path.abspath(paths.local_path(path))


def safe_url(url: str) -> str:
    """A database URL with its password masked (safe for metadata and logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def _looks_like_query(text: str) -> bool:
    head = text.lstrip().split(None, 1)[0].lower() if text.strip() else ""
    return head in ("select", "with")


def _select_sql(engine: Any, fmt: str, params: Mapping[str, Any]) -> str:
    query = params.get("query") or params.get("sql")
    table = params.get("table")
    if bool(query) == bool(table):
        raise ValueError(f"{fmt} reader needs exactly one of 'table' or 'query'")
    if query:
        return str(query)
    prep = engine.dialect.identifier_preparer
    name = prep.quote(str(table))
    if params.get("schema"):
        name = f"{prep.quote_schema(str(params['schema']))}.{name}"
    return f"SELECT * FROM {name}"


def _read_database(
    conn: duckdb.DuckDBPyConnection, url: str, fmt: str, params: Mapping[str, Any]
) -> duckdb.DuckDBPyRelation:
    import pandas as pd
    import pyarrow as pa
    import sqlalchemy as sa

    params = dict(params)
    engine = sa.create_engine(_with_credentials(url, params))
    try:
        query = _select_sql(engine, fmt, params)
        with engine.connect() as sa_conn:
            # Database sources are small next to files; pandas handles driver type quirks.
            pdf = pd.read_sql_query(sa.text(query), sa_conn)
    finally:
        engine.dispose()
    rel = conn.from_arrow(pa.Table.from_pandas(pdf, preserve_index=False))
    columns = _as_list(params.get("columns")) or None
    if columns:
        rel = rel.select(*[quote_ident(c) for c in columns])
    if params.get("nrows") is not None:
        rel = rel.limit(int(params["nrows"]))
    return rel


def read_sqlite(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """A SQLite ``table`` or ``query`` (ODIBI: ``read("x.db", source_type="sqlite", table=...)``)."""
    _check_params("sqlite", "reader", params, _SQL_READ_PARAMS - {"connection_string", *_SQL_CREDENTIAL_PARAMS})
    source = str(source)
    if _is_sql_url(source):
        url = source
    else:
        path = paths.local_path(source)
        # SQLAlchemy would silently create an empty database for a missing file.
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no SQLite database at {source!r}")
        url = _sqlite_url(path)
    return _read_database(conn, url, "sqlite", params)


def read_sql(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """Any SQLAlchemy database: URL as ``source`` or ``connection_string``; ``table`` or
    ``query`` (a ``source`` that is itself a SELECT is taken as the query)."""
    _check_params("sql", "reader", params, _SQL_READ_PARAMS)
    params = dict(params)
    url = params.pop("connection_string", None)
    source = str(source) if source is not None else ""
    if url is None:
        if not _is_sql_url(source):
            raise ValueError("sql reader needs a database URL as source or a 'connection_string' param")
        url = source
    elif source and not params.get("query") and not params.get("table"):
        if _looks_like_query(source):
            params["query"] = source
        else:
            params["table"] = source
    return _read_database(conn, url, "sql", params)


def read_source(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """Read ``source`` with the reader its format resolves to (see :func:`resolve_format`)."""
    fmt = resolve_format(source, params)
    explicit = str(params.get("format") or params.get("source_type") or "").lower()
    if fmt == "csv":
        return read_csv(conn, source, tsv=explicit == "tsv" or str(source).lower().endswith(".tsv"), **params)
    if fmt in ("json", "jsonl"):
        params = dict(params)
        lines = params.pop("lines", None)
        return read_json(conn, source, lines=True if fmt == "jsonl" else lines, **params)
    if fmt == "parquet":
        return read_parquet(conn, source, **params)
    if fmt == "delta":
        return read_delta(conn, source, **params)
    if fmt == "sqlite":
        return read_sqlite(conn, source, **params)
    return read_sql(conn, source, **params)


# --------------------------------------------------------------------------- writers


def _mode(fmt: str, params: dict[str, Any], allowed: tuple[str, ...] = ("overwrite", "append")) -> str:
    mode = str(params.pop("mode", None) or "overwrite").lower()
    if mode not in allowed:
        raise ValueError(f"{fmt} writer: mode {mode!r} is not supported; use one of {', '.join(allowed)}")
    return mode


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


def _concat_append(
    conn: duckdb.DuckDBPyConnection,
    rel: duckdb.DuckDBPyRelation,
    target: str,
    copy_opts: dict[str, Any],
    fmt: str,
) -> int:
    """Atomic append for line formats: old bytes + new rows -> temp -> replace."""
    with _existing_local_copy(target) as old, paths.atomic_output(target) as tmp:
        if old is None:
            return copy_to(conn, rel, tmp, copy_opts)
        shutil.copyfile(old, tmp)
        part = tmp + ".part"
        try:
            opts = dict(copy_opts)
            if fmt == "csv":
                opts["header"] = False
                rel = _align_to_csv_header(conn, rel, old, copy_opts)
            rows = copy_to(conn, rel, part, opts)
            _append_bytes(tmp, part)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(part)
        return rows


def _align_to_csv_header(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, old: str, copy_opts: Mapping[str, Any]
) -> duckdb.DuckDBPyRelation:
    """Reorder ``rel``'s columns to the existing file's header; refuse a different column set."""
    if copy_opts.get("header") is False:
        return rel
    delim = copy_opts.get("delimiter", ",")
    existing = conn.sql(
        f"SELECT * FROM read_csv({sql_literal(old)}, delim = {sql_literal(delim)}, header = true) LIMIT 0"
    ).columns
    if sorted(existing) != sorted(rel.columns):
        raise ValueError(f"csv append: columns {rel.columns} do not match the existing file's header {existing}")
    return rel.select(*[quote_ident(c) for c in existing])


def _union_rewrite(
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


_CSV_WRITE_PARAMS = {
    "mode",
    "delimiter",
    "sep",
    "header",
    "quote",
    "quotechar",
    "escape",
    "escapechar",
    "na_rep",
    "nullstr",
    "dateformat",
    "date_format",
    "timestampformat",
    "timestamp_format",
    "compression",
    "index",
    "encoding",
}


def _check_index(fmt: str, params: dict[str, Any]) -> None:
    # ODIBI configs often carry pandas' index=False; there is no index to write here.
    if params.pop("index", False):
        raise ValueError(f"{fmt} writer: index=True is not supported (frames have no index)")


def write_csv(conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any) -> WriteInfo:
    """CSV through DuckDB's COPY (header by default); ``mode`` overwrite | append."""
    _check_params("csv", "writer", params, _CSV_WRITE_PARAMS)
    params = {k: v for k, v in params.items() if k not in _COMMON_PARAMS}
    mode = _mode("csv", params)
    _check_index("csv", params)
    enc = params.pop("encoding", None)
    if enc and str(enc).lower().replace("-", "") != "utf8":
        raise ValueError(f"csv writer: encoding {enc!r} is not supported; only utf-8")
    aliases = {
        "sep": "delimiter",
        "quotechar": "quote",
        "escapechar": "escape",
        "na_rep": "nullstr",
        "date_format": "dateformat",
        "timestamp_format": "timestampformat",
    }
    opts: dict[str, Any] = {"format": "csv", "header": True}
    if str(target).lower().endswith(".tsv"):
        opts["delimiter"] = "\t"
    for key, value in params.items():
        opts[aliases.get(key, key)] = _header_flag(value) if key == "header" else value
    if mode == "append":
        if opts.get("compression") not in (None, "none", "auto"):
            raise ValueError("csv writer: mode='append' cannot be combined with compression")
        rows = _concat_append(conn, rel, target, opts, "csv")
    else:
        with paths.atomic_output(target) as tmp:
            rows = copy_to(conn, rel, tmp, opts)
    return WriteInfo(uri=str(target), format="csv", rows=rows, extra={"mode": mode})


_JSON_WRITE_PARAMS = {
    "mode",
    "orient",
    "compression",
    "dateformat",
    "date_format",
    "timestampformat",
    "timestamp_format",
    "index",
    # pandas' to_json keywords (ODIBI's pandas engine): honoured by writing the document in Python.
    "indent",
    "force_ascii",
    "date_unit",
}
_PANDAS_DATE_FORMATS = ("iso", "epoch")


def _json_document(
    conn: duckdb.DuckDBPyConnection,
    rel: duckdb.DuckDBPyRelation,
    path: str,
    *,
    indent: Any,
    force_ascii: bool,
    epoch_unit: str | None,
) -> int:
    """``rel`` as one JSON array of records, the way pandas' ``to_json(orient="records")``
    lays it out with ``indent``/``force_ascii``; dates ISO, or epoch numbers in ``epoch_unit``."""
    import json

    scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
    columns = []
    for name, dtype in zip(rel.columns, rel.types, strict=True):
        kind = str(dtype).upper()
        if epoch_unit is not None and (kind.startswith("TIMESTAMP") or kind == "DATE"):
            columns.append(
                f"CAST(round(epoch({quote_ident(name)}) * {scale[epoch_unit]}) AS BIGINT) AS {quote_ident(name)}"
            )
        else:
            columns.append(quote_ident(name))
    out = rel.select(", ".join(columns)) if columns else rel
    records = [dict(zip(out.columns, row, strict=True)) for row in out.fetchall()]

    def default(value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    text = json.dumps(
        records, indent=int(indent) if indent is not None else None, ensure_ascii=force_ascii, default=default
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return len(records)


def write_json(
    conn: duckdb.DuckDBPyConnection,
    rel: duckdb.DuckDBPyRelation,
    target: str,
    *,
    lines: bool = False,
    **params: Any,
) -> WriteInfo:
    """JSON as one records array, or JSON lines (``lines=True`` / format ``jsonl``)."""
    fmt = "jsonl" if lines else "json"
    _check_params(fmt, "writer", params, _JSON_WRITE_PARAMS)
    params = {k: v for k, v in params.items() if k not in _COMMON_PARAMS}
    mode = _mode(fmt, params)
    _check_index(fmt, params)
    orient = params.pop("orient", "records")
    if orient != "records":
        raise ValueError(f"{fmt} writer: orient={orient!r} is not supported; only 'records'")
    # pandas spellings: date_format iso | epoch (with date_unit), indent, force_ascii.
    pandas_dates = params.get("date_format") in _PANDAS_DATE_FORMATS
    epoch_unit = str(params.pop("date_unit", "ms")) if params.get("date_format") == "epoch" else None
    if pandas_dates:
        params.pop("date_format")
    params.pop("date_unit", None)
    indent, force_ascii = params.pop("indent", None), params.pop("force_ascii", None)
    if indent is not None or force_ascii or epoch_unit is not None:
        if lines or mode == "append" or params.get("compression") not in (None, "none", "auto"):
            raise ValueError(
                f"{fmt} writer: indent/force_ascii/date_format='epoch' write one JSON document; "
                "they cannot be combined with lines, mode='append' or compression"
            )
        with paths.atomic_output(target) as tmp:
            rows = _json_document(conn, rel, tmp, indent=indent, force_ascii=bool(force_ascii), epoch_unit=epoch_unit)
        return WriteInfo(uri=str(target), format=fmt, rows=rows, extra={"mode": mode})
    aliases = {"date_format": "dateformat", "timestamp_format": "timestampformat"}
    opts: dict[str, Any] = {"format": "json"}
    if not lines:
        opts["array"] = True
    for key, value in params.items():
        opts[aliases.get(key, key)] = value
    if mode == "append" and lines:
        if opts.get("compression") not in (None, "none", "auto"):
            raise ValueError("jsonl writer: mode='append' cannot be combined with compression")
        rows = _concat_append(conn, rel, target, opts, "jsonl")
    elif mode == "append":
        rows = _union_rewrite(conn, rel, target, lambda p: f"read_json({sql_literal(p)}, format = 'auto')", opts)
    else:
        with paths.atomic_output(target) as tmp:
            rows = copy_to(conn, rel, tmp, opts)
    return WriteInfo(uri=str(target), format=fmt, rows=rows, extra={"mode": mode})


_PARQUET_WRITE_PARAMS = {"mode", "compression", "row_group_size", "index", "engine"}


def write_parquet(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any
) -> WriteInfo:
    """Parquet through DuckDB's writer. ``append`` on a file rewrites old + new rows
    atomically; on a directory it adds a part file. Overwriting a directory swaps in a
    freshly written directory."""
    _check_params("parquet", "writer", params, _PARQUET_WRITE_PARAMS)
    params = {k: v for k, v in params.items() if k not in _COMMON_PARAMS and k != "engine"}
    mode = _mode("parquet", params)
    _check_index("parquet", params)
    opts: dict[str, Any] = {"format": "parquet", **params}
    target = str(target)
    is_dir = paths.isdir(target) or target.endswith("/")
    if is_dir and mode == "append":
        part = paths.join(target, f"part-{uuid.uuid4().hex}.parquet")
        with paths.atomic_output(part) as tmp:
            rows = copy_to(conn, rel, tmp, opts)
    elif is_dir:
        rows = _overwrite_dir(conn, rel, target, opts)
    elif mode == "append":
        rows = _union_rewrite(conn, rel, target, lambda p: f"read_parquet({sql_literal(p)})", opts)
    else:
        with paths.atomic_output(target) as tmp:
            rows = copy_to(conn, rel, tmp, opts)
    return WriteInfo(uri=target, format="parquet", rows=rows, extra={"mode": mode})


def _overwrite_dir(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, opts: Mapping[str, Any]
) -> int:
    """Replace a Parquet dataset directory with one file: stage a sibling dir, then swap."""
    if paths.is_remote(target):
        fs = paths.fs_for(target)
        part = paths.join(target, f"part-{uuid.uuid4().hex}.parquet")
        with paths.atomic_output(part) as tmp:
            rows = copy_to(conn, rel, tmp, opts)
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
        rows = copy_to(conn, rel, os.path.join(stage, "part-0.parquet"), opts)
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


def write_delta(conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any) -> WriteInfo:
    """A Delta table via ``deltalake``: ``mode`` overwrite | append | merge (``merge_keys``).
    Streams Arrow batches out of DuckDB; ``WriteInfo.version`` is the committed version."""
    from deltalake import DeltaTable, write_deltalake

    _check_params("delta", "writer", params, _DELTA_WRITE_PARAMS)
    params = {k: v for k, v in params.items() if k not in _COMMON_PARAMS}
    mode = _mode("delta", params, ("overwrite", "append", "merge"))
    target = paths.local_path(str(target))
    storage = paths.delta_storage_options(target, params.pop("storage_options", None))
    merge_keys = _as_list(params.pop("merge_keys", None))
    existed = paths.exists(target)
    counter = _CountingReader(rel.to_arrow_reader())
    extra: dict[str, Any] = {"mode": mode}
    try:
        if mode == "merge" and existed and DeltaTable.is_deltatable(target, storage_options=storage):
            if not merge_keys:
                raise ValueError("delta writer: mode='merge' needs merge_keys")
            predicate = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in merge_keys)
            metrics = (
                DeltaTable(target, storage_options=storage)
                .merge(counter.stream(), predicate, source_alias="s", target_alias="t")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
            extra["merge_metrics"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        else:
            if mode == "merge" and not merge_keys:
                raise ValueError("delta writer: mode='merge' needs merge_keys")
            write_deltalake(
                target,
                counter.stream(),
                mode="append" if mode == "merge" else mode,
                storage_options=storage,
                **params,
            )
    except BaseException:
        # A failed first write must not leave a half-made table directory behind.
        if not existed and not paths.is_remote(target):
            shutil.rmtree(target, ignore_errors=True)
        raise
    version = DeltaTable(target, storage_options=storage).version()
    return WriteInfo(uri=str(target), format="delta", rows=counter.rows, version=version, extra=extra)


_SQL_WRITE_PARAMS = {
    "mode",
    "if_exists",
    "table",
    "schema",
    "chunksize",
    "index",
    "connection_string",
    *_SQL_CREDENTIAL_PARAMS,
}


def _with_credentials(url: str, params: dict[str, Any]) -> Any:
    """``url`` with the ``user``/``username``/``password`` params set into it (popped from
    ``params``), as a SQLAlchemy URL object: its ``str()`` masks the password."""
    from sqlalchemy.engine import make_url

    username, user = params.pop("username", None), params.pop("user", None)
    user = username if username is not None else user
    password = params.pop("password", None)
    if user is None and password is None:
        return url
    parsed = make_url(url)
    return parsed.set(
        username=str(user) if user is not None else parsed.username,
        password=str(password) if password is not None else parsed.password,
    )


def _write_database(rel: duckdb.DuckDBPyRelation, url: str, fmt: str, uri: str, params: dict[str, Any]) -> WriteInfo:
    import sqlalchemy as sa

    if_exists = params.pop("if_exists", None)
    if if_exists is not None:
        # pandas/ODIBI spelling: replace | append | fail
        mapping = {"replace": "overwrite", "append": "append", "fail": "fail"}
        if str(if_exists) not in mapping:
            raise ValueError(f"{fmt} writer: if_exists={if_exists!r}; use replace, append or fail")
        params.setdefault("mode", mapping[str(if_exists)])
    mode = _mode(fmt, params, ("overwrite", "append", "fail"))
    _check_index(fmt, params)
    table = params.pop("table", None)
    if not table:
        raise ValueError(f"{fmt} writer needs a 'table' param")
    schema = params.pop("schema", None)
    chunksize = int(params.pop("chunksize", None) or 100_000)
    reader = rel.to_arrow_reader(chunksize)
    first_policy = {"overwrite": "replace", "append": "append", "fail": "fail"}[mode]
    rows = 0
    engine = sa.create_engine(_with_credentials(url, params))
    if engine.dialect.name == "sqlite":
        _transactional_sqlite(engine)
    try:
        # One transaction: a failure halfway (even a failing query) leaves the old table.
        with engine.begin() as sa_conn:
            wrote = False
            for batch in reader:
                batch.to_pandas().to_sql(
                    table,
                    sa_conn,
                    schema=schema,
                    if_exists=first_policy if not wrote else "append",
                    index=False,
                )
                wrote = True
                rows += batch.num_rows
            if not wrote:
                reader.schema.empty_table().to_pandas().to_sql(
                    table, sa_conn, schema=schema, if_exists=first_policy, index=False
                )
    finally:
        engine.dispose()
    return WriteInfo(uri=uri, format=fmt, rows=rows, extra={"mode": mode, "table": table})


def _transactional_sqlite(engine: Any) -> None:
    """Make pysqlite run DDL inside the transaction (SQLAlchemy's documented recipe).

    Python's sqlite3 autocommits ``DROP``/``CREATE TABLE``, so without this an
    overwrite that fails halfway would have dropped the old table already.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(sa_conn: Any) -> None:
        sa_conn.exec_driver_sql("BEGIN")


def write_sqlite(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any
) -> WriteInfo:
    """A table in a SQLite file (created with its parent directory if missing)."""
    _check_params("sqlite", "writer", params, _SQL_WRITE_PARAMS - {"connection_string", *_SQL_CREDENTIAL_PARAMS})
    params = {k: v for k, v in params.items() if k not in _COMMON_PARAMS}
    target = str(target)
    if _is_sql_url(target):
        url, uri = target, safe_url(target)
    else:
        path = os.path.abspath(paths.local_path(target))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        url, uri = _sqlite_url(path), target
    return _write_database(rel, url, "sqlite", uri, params)


def write_sql(conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any) -> WriteInfo:
    """A table in any SQLAlchemy database (URL as ``target`` or ``connection_string``)."""
    _check_params("sql", "writer", params, _SQL_WRITE_PARAMS)
    params = {k: v for k, v in params.items() if k not in _COMMON_PARAMS}
    url = params.pop("connection_string", None)
    target = str(target) if target is not None else ""
    if url is None:
        if not _is_sql_url(target):
            raise ValueError("sql writer needs a database URL as target or a 'connection_string' param")
        url = target
    elif target and not params.get("table"):
        params["table"] = target
    return _write_database(rel, url, "sql", safe_url(url), params)


def write_target(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any
) -> WriteInfo:
    """Write ``rel`` to ``target`` with the writer its format resolves to."""
    fmt = resolve_format(target, params)
    explicit = str(params.get("format") or params.get("source_type") or "").lower()
    if fmt == "csv":
        if explicit == "tsv" and "delimiter" not in params and "sep" not in params:
            params["delimiter"] = "\t"
        return write_csv(conn, rel, target, **params)
    if fmt in ("json", "jsonl"):
        lines = bool(params.pop("lines", fmt == "jsonl"))
        return write_json(conn, rel, target, lines=lines, **params)
    if fmt == "parquet":
        return write_parquet(conn, rel, target, **params)
    if fmt == "delta":
        return write_delta(conn, rel, target, **params)
    if fmt == "sqlite":
        return write_sqlite(conn, rel, target, **params)
    return write_sql(conn, rel, target, **params)


def accepted_params(fmt: str, kind: str) -> frozenset[str] | None:
    """The params the ``kind`` (``reader`` or ``writer``) of file format ``fmt`` accepts, for
    validation; None for formats whose options are not checked here (databases)."""
    table: dict[tuple[str, str], Iterable[str]] = {
        ("csv", "reader"): _CSV_READ_PARAMS,
        ("json", "reader"): {*_JSON_READ_PARAMS, "lines"},
        ("jsonl", "reader"): {*_JSON_READ_PARAMS, "lines"},
        ("parquet", "reader"): _PARQUET_READ_PARAMS,
        ("delta", "reader"): _DELTA_READ_PARAMS,
        ("csv", "writer"): _CSV_WRITE_PARAMS,
        ("json", "writer"): {*_JSON_WRITE_PARAMS, "lines"},
        ("jsonl", "writer"): {*_JSON_WRITE_PARAMS, "lines"},
        ("parquet", "writer"): _PARQUET_WRITE_PARAMS,
        ("delta", "writer"): _DELTA_WRITE_PARAMS,
    }
    found = table.get((fmt, kind))
    return None if found is None else frozenset({*found, *_COMMON_PARAMS})
