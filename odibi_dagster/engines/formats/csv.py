"""CSV (and TSV) on the pandas+DuckDB engine: DuckDB's parallel ``read_csv`` and ``COPY``.

Both accept DuckDB's option names and the usual pandas spellings (``sep``, ``header``,
``usecols``, ``nrows``, ``dtype``, ``na_rep``...). Numbers, booleans and text are inferred
as pandas does, and pandas' null tokens are nulls, on both engines (see
:func:`csv_null_tokens`). ``mode: append`` adds rows without a second header, in the
existing file's column order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb

from odibi_dagster.config.templating import quote_ident, sql_literal
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats import duck

__all__ = ["PANDAS_NA_VALUES", "csv_null_tokens", "csv_row_count", "read_csv", "write_csv"]

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
    extra = [] if given is None else [str(v) for v in duck.as_list(given)]
    keep_default = params.get("keep_default_na", True) not in (False, "false", "False", 0)
    tokens = [*(PANDAS_NA_VALUES if keep_default else ("",)), *extra]
    return list(dict.fromkeys(tokens))


def _header_flag(value: Any) -> bool:
    # pandas spells "first row is the header" as header=0 and "no header" as header=None.
    if value is None or value is False:
        return False
    if value is True or value == 0 or value == "infer":
        return True
    raise ValueError(f"csv header={value!r} is not supported; use true/false (or 0/None)")


def read_csv(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """CSV through DuckDB's ``read_csv`` (parallel, globs, a directory's ``*.csv``)."""
    duck.check_params("csv", "reader", params, _CSV_READ_PARAMS)
    named: dict[str, Any] = {"nullstr": csv_null_tokens(params)}
    columns = limit = parse_dates = None
    for key, value in params.items():
        if key in duck.COMMON_PARAMS or key in ("na_values", "nullstr", "keep_default_na"):
            continue
        if key == "header":
            named["header"] = _header_flag(value)
        elif key in ("dtype", "types"):
            named["types"] = duck.duck_types(value) if isinstance(value, Mapping) else value
        elif key in ("columns", "usecols"):
            columns = duck.as_list(value)
        elif key == "nrows":
            limit = int(value)
        elif key == "parse_dates":
            parse_dates = duck.as_list(value)
        else:
            named[_CSV_ALIASES.get(key, key)] = value
    if not named.get("all_varchar") and named.get("auto_detect", True) is not False:
        named.setdefault("auto_type_candidates", _PANDAS_CSV_TYPES)
    path = duck.scan_path(conn, source, "csv")
    return duck.select(conn, f"read_csv({duck.call_args(path, named)})", columns, limit, parse_dates)


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
_CSV_WRITE_ALIASES = {
    "sep": "delimiter",
    "quotechar": "quote",
    "escapechar": "escape",
    "na_rep": "nullstr",
    "date_format": "dateformat",
    "timestamp_format": "timestampformat",
}


def _aligned_to_header(conn: duckdb.DuckDBPyConnection, copy_opts: Mapping[str, Any]):
    """For an append: reorder the new rows to the existing file's header (refusing another
    column set) and write them without a header."""

    def align(rel: duckdb.DuckDBPyRelation, old: str) -> tuple[duckdb.DuckDBPyRelation, dict[str, Any]]:
        opts = {**copy_opts, "header": False}
        if copy_opts.get("header") is False:
            return rel, opts
        delim = copy_opts.get("delimiter", ",")
        existing = conn.sql(
            f"SELECT * FROM read_csv({sql_literal(old)}, delim = {sql_literal(delim)}, header = true) LIMIT 0"
        ).columns
        if sorted(existing) != sorted(rel.columns):
            raise ValueError(f"csv append: columns {rel.columns} do not match the existing file's header {existing}")
        return rel.select(*[quote_ident(c) for c in existing]), opts

    return align


def write_csv(conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any) -> WriteInfo:
    """CSV through DuckDB's COPY (header by default); ``mode`` overwrite | append."""
    params, mode = duck.writer_params("csv", params, _CSV_WRITE_PARAMS)
    enc = params.pop("encoding", None)
    if enc and str(enc).lower().replace("-", "") != "utf8":
        raise ValueError(f"csv writer: encoding {enc!r} is not supported; only utf-8")
    opts: dict[str, Any] = {"format": "csv", "header": True}
    for key, value in params.items():
        opts[_CSV_WRITE_ALIASES.get(key, key)] = _header_flag(value) if key == "header" else value
    if mode == "append":
        rows = duck.concat_append(conn, rel, target, opts, "csv", _aligned_to_header(conn, opts))
    else:
        rows = duck.replace_file(conn, rel, target, opts)
    return duck.write_info("csv", target, rows, mode)


# Reader params that leave every line of a plain CSV file one record (or the header).
_LINE_PARAMS = {"header", "sep", "delimiter", "delim", "encoding"}
_CHUNK = 4 << 20


def csv_row_count(conn: duckdb.DuckDBPyConnection, source: str, params: Mapping[str, Any]) -> int | None:
    """The rows ``read_csv(source, **params)`` gives, from the file's line breaks: a byte scan
    (about 1 GB/s per core, all cores) instead of parsing every field again, which
    is what ``COUNT(*)`` does. ``None`` unless every line is sure to be one record: one local,
    uncompressed UTF-8 file read with plain params, without a quote character anywhere
    (DuckDB's sniffer finds none, and no ``"`` or ``'`` byte occurs), comments, skipped rows,
    blank lines or carriage returns."""
    extra = {k for k in params if k not in duck.COMMON_PARAMS} - _LINE_PARAMS
    enc = str(params.get("encoding") or "utf-8").lower().replace("-", "")
    path = paths.local_path(str(source))
    if extra or enc != "utf8" or paths.is_remote(path) or paths.has_glob(path) or not os.path.isfile(path):
        return None
    if not path.lower().endswith((".csv", ".tsv", ".txt")):
        return None  # a compressed file (.gz, .zst) or an unknown kind
    sniffed = conn.execute(
        "SELECT Quote, Comment, SkipRows, HasHeader, NewLineDelimiter FROM sniff_csv(?)", [path]
    ).fetchall()
    if not sniffed:
        return None
    quote, comment, skip, has_header, newline = sniffed[0]
    if quote != "(empty)" or comment != "(empty)" or skip or newline != "\\n":
        return None
    header = _header_flag(params["header"]) if "header" in params else bool(has_header)
    lines = _record_lines(path)
    return None if lines is None else max(lines - int(header), 0)


def _record_lines(path: str) -> int | None:
    """Lines of a file, ``None`` if a quote, a carriage return or a blank line occurs (DuckDB
    skips blank lines; CR LF files are left to ``COUNT(*)``: checking them costs as much).

    The file is scanned in one slice per core, in parallel: numpy's compares release the GIL,
    where ``bytes.count`` and a search for ``\\n\\n`` hold it (2.0 s on one core for a 670 MB
    file, 0.6 s on two this way). A blank line across two chunks or slices is one ending with
    a line break and the next one starting with one."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    step = -(-size // max(min(os.cpu_count() or 1, 8), 1))
    starts = range(0, size, step)
    with ThreadPoolExecutor(max_workers=len(starts)) as pool:
        slices = list(pool.map(lambda start: _scan_slice(path, start, min(start + step, size)), starts))
    if any(s is None for s in slices):
        return None
    lines, after_break = 0, True  # the file's start counts as after a line break
    for count, first, last in slices:  # type: ignore[misc]
        if after_break and first == 0x0A:
            return None
        lines += count
        after_break = last == 0x0A
    return lines + (0 if after_break else 1)  # the last record may have no line break


def _scan_slice(path: str, start: int, end: int) -> tuple[int, int, int] | None:
    """Line breaks in bytes ``start:end`` of ``path``, with the slice's first and last byte;
    ``None`` when a quote, a carriage return or a blank line occurs in it."""
    import numpy as np

    buf = bytearray(_CHUNK)
    data = np.frombuffer(buf, dtype=np.uint8)
    breaks = np.empty(_CHUNK, dtype=bool)
    pairs = np.empty(_CHUNK, dtype=bool)
    count, first, last = 0, -1, -1
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start)
        while start < end and (n := fh.readinto(memoryview(buf)[: min(_CHUNK, end - start)])):
            if any(buf.find(byte, 0, n) >= 0 for byte in (b'"', b"'", b"\r")):  # memchr
                return None
            nl = np.equal(data[:n], 0x0A, out=breaks[:n])
            if (last == 0x0A and buf[0] == 0x0A) or np.logical_and(nl[1:], nl[:-1], out=pairs[: n - 1]).any():
                return None
            first = buf[0] if first < 0 else first
            count += int(np.count_nonzero(nl))
            last, start = buf[n - 1], start + n
    return count, first, last


duck.register_format("csv", read_csv, write_csv, _CSV_READ_PARAMS, _CSV_WRITE_PARAMS)
