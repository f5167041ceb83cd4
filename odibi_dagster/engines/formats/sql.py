"""Databases on the pandas+DuckDB engine: SQLite files and any SQLAlchemy URL.

A ``sqlite`` source or target is a database file (created with its parent directory when
written); a ``sql`` one is a URL, given as the source/target or as ``connection_string``
(the source is then the table, or the query when it is a SELECT). Readers take ``table``
or ``query``; writers write ``table`` in one transaction (``mode`` overwrite | append |
fail, or pandas' ``if_exists``), so a failure leaves the old table. ``user``/``username``
and ``password`` params (``{"secret": NAME}``) are set into a URL that holds none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import duckdb

from odibi_dagster.engines import paths
from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats import duck
from odibi_dagster.engines.formats.table import is_database_url
from odibi_dagster.engines.secrets import redact_url

__all__ = ["read_sql", "read_sqlite", "write_sql", "write_sqlite"]

# Credentials for a SQLAlchemy URL that holds none (ODIBI's get_secret: {"secret": NAME} values).
_SQL_CREDENTIAL_PARAMS = {"user", "username", "password"}
_SQL_READ_PARAMS = {"table", "query", "schema", "columns", "nrows", "connection_string", "sql", *_SQL_CREDENTIAL_PARAMS}
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
_SQLITE_ONLY = {"connection_string", *_SQL_CREDENTIAL_PARAMS}  # what a SQLite file does not take


def _sqlite_url(path: str) -> str:
    return "sqlite:///" + os.path.abspath(paths.local_path(path))


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
    return duck.project(conn.from_arrow(pa.Table.from_pandas(pdf, preserve_index=False)), params)


def read_sqlite(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """A SQLite ``table`` or ``query`` (ODIBI: ``read("x.db", source_type="sqlite", table=...)``)."""
    duck.check_params("sqlite", "reader", params, _SQL_READ_PARAMS - _SQLITE_ONLY)
    source = str(source)
    if is_database_url(source):
        url = source
    else:
        path = paths.local_path(source)
        # SQLAlchemy would silently create an empty database for a missing file.
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no SQLite database at {source!r}")
        url = _sqlite_url(path)
    return _read_database(conn, url, "sqlite", params)


def _looks_like_query(text: str) -> bool:
    head = text.lstrip().split(None, 1)[0].lower() if text.strip() else ""
    return head in ("select", "with")


def _database_url(kind: str, location: Any, params: dict[str, Any]) -> tuple[str, str]:
    """The database URL (the ``connection_string`` param, popped, else ``location``) and what
    else ``location`` names: the table (or query) when the URL came from the param."""
    url = params.pop("connection_string", None)
    location = str(location) if location is not None else ""
    if url is not None:
        return str(url), location
    if not is_database_url(location):
        where = "source" if kind == "reader" else "target"
        raise ValueError(f"sql {kind} needs a database URL as {where} or a 'connection_string' param")
    return location, ""


def read_sql(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """Any SQLAlchemy database: URL as ``source`` or ``connection_string``; ``table`` or
    ``query`` (a ``source`` that is itself a SELECT is taken as the query)."""
    duck.check_params("sql", "reader", params, _SQL_READ_PARAMS)
    params = dict(params)
    url, name = _database_url("reader", source, params)
    if name and not params.get("query") and not params.get("table"):
        params["query" if _looks_like_query(name) else "table"] = name
    return _read_database(conn, url, "sql", params)


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


def _write_batches(engine: Any, reader: Any, table: str, schema: str | None, policy: str) -> int:
    """Every batch of ``reader`` into ``table``, in one transaction (a failure halfway, even a
    failing query, leaves the old table); an empty result still creates the table."""
    rows = 0
    with engine.begin() as sa_conn:
        wrote = False
        for batch in reader:
            if_exists = policy if not wrote else "append"
            batch.to_pandas().to_sql(table, sa_conn, schema=schema, if_exists=if_exists, index=False)
            wrote = True
            rows += batch.num_rows
        if not wrote:
            reader.schema.empty_table().to_pandas().to_sql(table, sa_conn, schema=schema, if_exists=policy, index=False)
    return rows


def _write_database(rel: duckdb.DuckDBPyRelation, url: str, fmt: str, uri: str, params: dict[str, Any]) -> WriteInfo:
    import sqlalchemy as sa

    if_exists = params.pop("if_exists", None)
    if if_exists is not None:
        # pandas/ODIBI spelling: replace | append | fail
        mapping = {"replace": "overwrite", "append": "append", "fail": "fail"}
        if str(if_exists) not in mapping:
            raise ValueError(f"{fmt} writer: if_exists={if_exists!r}; use replace, append or fail")
        params.setdefault("mode", mapping[str(if_exists)])
    params, mode = duck.take_mode(fmt, params, ("overwrite", "append", "fail"))
    table = params.pop("table", None)
    if not table:
        raise ValueError(f"{fmt} writer needs a 'table' param")
    schema = params.pop("schema", None)
    reader = rel.to_arrow_reader(int(params.pop("chunksize", None) or 100_000))
    policy = {"overwrite": "replace", "append": "append", "fail": "fail"}[mode]
    engine = sa.create_engine(_with_credentials(url, params))
    if engine.dialect.name == "sqlite":
        _transactional_sqlite(engine)
    try:
        rows = _write_batches(engine, reader, table, schema, policy)
    finally:
        engine.dispose()
    return WriteInfo(uri=uri, format=fmt, rows=rows, extra={"mode": mode, "table": table})


def write_sqlite(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any
) -> WriteInfo:
    """A table in a SQLite file (created with its parent directory if missing)."""
    duck.check_params("sqlite", "writer", params, _SQL_WRITE_PARAMS - _SQLITE_ONLY)
    target = str(target)
    if is_database_url(target):
        url, uri = target, redact_url(target)
    else:
        path = os.path.abspath(paths.local_path(target))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        url, uri = _sqlite_url(path), target
    return _write_database(rel, url, "sqlite", uri, dict(params))


def write_sql(conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any) -> WriteInfo:
    """A table in any SQLAlchemy database (URL as ``target`` or ``connection_string``)."""
    duck.check_params("sql", "writer", params, _SQL_WRITE_PARAMS)
    params = dict(params)
    url, name = _database_url("writer", target, params)
    if name and not params.get("table"):
        params["table"] = name
    # The URI is shown in metadata: a password in the URL is masked (the shared rule).
    return _write_database(rel, url, "sql", redact_url(url), params)


# Database options are the driver's: not checked before a run.
duck.register_format("sqlite", read_sqlite, write_sqlite)
duck.register_format("sql", read_sql, write_sql)
