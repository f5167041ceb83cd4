"""JSON (one records array) and JSON lines on the pandas+DuckDB engine.

Reading a ``json`` source auto-detects JSON lines too. Writing follows pandas'
``to_json(orient="records")``: ``indent``, ``force_ascii`` and ``date_format: epoch``
(with ``date_unit``) write one document the way pandas lays it out. ``mode: append``
adds lines to a JSON lines file and rewrites a JSON array with old + new records.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from odibi_dagster.config.templating import quote_ident, sql_literal
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats import duck

__all__ = ["read_json", "write_json"]

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
_DATE_ALIASES = {"date_format": "dateformat", "timestamp_format": "timestampformat"}


def read_json(
    conn: duckdb.DuckDBPyConnection, source: str, *, lines: bool | None = None, **params: Any
) -> duckdb.DuckDBPyRelation:
    """JSON (records array, auto-detected) or JSON lines through DuckDB's ``read_json``."""
    fmt = "jsonl" if lines else "json"
    duck.check_params(fmt, "reader", params, _JSON_READ_PARAMS)
    named: dict[str, Any] = {"format": "newline_delimited" if lines else "auto"}
    columns = limit = None
    for key, value in params.items():
        if key in duck.COMMON_PARAMS:
            continue
        if key == "orient":
            if value not in ("records", None):
                raise ValueError(f"json orient={value!r} is not supported; only 'records'")
        elif key in ("dtype", "types"):
            named["columns"] = duck.duck_types(value)
        elif key == "columns":
            columns = duck.as_list(value)
        elif key == "nrows":
            limit = int(value)
        else:
            named[_DATE_ALIASES.get(key, key)] = value
    path = duck.scan_path(conn, source, "json*" if lines else "json")
    return duck.select(conn, f"read_json({duck.call_args(path, named)})", columns, limit)


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
_EPOCH_SCALE = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _json_document(
    rel: duckdb.DuckDBPyRelation, path: str, *, indent: Any, force_ascii: bool, epoch_unit: str | None
) -> int:
    """``rel`` as one JSON array of records, the way pandas' ``to_json(orient="records")``
    lays it out with ``indent``/``force_ascii``; dates ISO, or epoch numbers in ``epoch_unit``."""
    columns = []
    for name, dtype in zip(rel.columns, rel.types, strict=True):
        kind = str(dtype).upper()
        if epoch_unit is not None and (kind.startswith("TIMESTAMP") or kind == "DATE"):
            scale = _EPOCH_SCALE[epoch_unit]
            columns.append(f"CAST(round(epoch({quote_ident(name)}) * {scale}) AS BIGINT) AS {quote_ident(name)}")
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


def _pandas_document(fmt: str, params: dict[str, Any], lines: bool, mode: str) -> dict[str, Any] | None:
    """pandas' ``indent``/``force_ascii``/``date_format`` (``iso`` | ``epoch`` + ``date_unit``),
    popped from ``params``: the arguments of :func:`_json_document`, or None when no pandas
    layout was asked for."""
    pandas_dates = params.get("date_format") in _PANDAS_DATE_FORMATS
    epoch_unit = str(params.pop("date_unit", "ms")) if params.get("date_format") == "epoch" else None
    if pandas_dates:
        params.pop("date_format")
    params.pop("date_unit", None)
    indent, force_ascii = params.pop("indent", None), params.pop("force_ascii", None)
    if indent is None and not force_ascii and epoch_unit is None:
        return None
    if lines or mode == "append" or params.get("compression") not in duck.UNCOMPRESSED:
        raise ValueError(
            f"{fmt} writer: indent/force_ascii/date_format='epoch' write one JSON document; "
            "they cannot be combined with lines, mode='append' or compression"
        )
    return {"indent": indent, "force_ascii": bool(force_ascii), "epoch_unit": epoch_unit}


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
    params, mode = duck.writer_params(fmt, params, _JSON_WRITE_PARAMS)
    orient = params.pop("orient", "records")
    if orient != "records":
        raise ValueError(f"{fmt} writer: orient={orient!r} is not supported; only 'records'")
    document = _pandas_document(fmt, params, lines, mode)
    if document is not None:
        with paths.atomic_output(target) as tmp:
            rows = _json_document(rel, tmp, **document)
        return duck.write_info(fmt, target, rows, mode)
    opts: dict[str, Any] = {"format": "json"}
    if not lines:
        opts["array"] = True
    for key, value in params.items():
        opts[_DATE_ALIASES.get(key, key)] = value
    if mode == "append" and lines:
        rows = duck.concat_append(conn, rel, target, opts, fmt)
    elif mode == "append":
        rows = duck.union_rewrite(conn, rel, target, lambda p: f"read_json({sql_literal(p)}, format = 'auto')", opts)
    else:
        rows = duck.replace_file(conn, rel, target, opts)
    return duck.write_info(fmt, target, rows, mode)


def _register(fmt: str, default_lines: bool) -> None:
    """``json`` reads/writes an array unless ``lines`` says otherwise; ``jsonl`` always lines."""

    def read(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
        lines = params.pop("lines", None)
        return read_json(conn, source, lines=True if default_lines else lines, **params)

    def write(conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any) -> WriteInfo:
        return write_json(conn, rel, target, lines=bool(params.pop("lines", default_lines)), **params)

    duck.register_format(fmt, read, write, {*_JSON_READ_PARAMS, "lines"}, {*_JSON_WRITE_PARAMS, "lines"})


_register("json", default_lines=False)
_register("jsonl", default_lines=True)
