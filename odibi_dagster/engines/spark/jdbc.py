"""Databases on the Spark engine through JDBC: the ``sqlite`` and ``sql`` formats.

The URL is ``url`` / ``jdbc_url``, a ``jdbc:`` ``connection_string`` or source, or, for
``sqlite``, the database file. ``table`` (or ODIBI's source name) or ``query`` is read;
``table`` is written (``mode`` overwrite | append). The driver class is inferred from the URL
(``DriverManager`` cannot see jars added at runtime). Errors name the URL, secrets masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.spark import hadoop
from odibi_dagster.engines.spark.common import error_summary, observe, observed_rows, options

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from odibi_dagster.engines.spark.context import SparkEngineContext

__all__ = ["jdbc_options", "read_jdbc", "write_jdbc"]

_JDBC_DRIVERS = {
    "jdbc:sqlite:": "org.sqlite.JDBC",
    "jdbc:postgresql:": "org.postgresql.Driver",
    "jdbc:mysql:": "com.mysql.cj.jdbc.Driver",
    "jdbc:mariadb:": "org.mariadb.jdbc.Driver",
    "jdbc:sqlserver:": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "jdbc:oracle:": "oracle.jdbc.OracleDriver",
    "jdbc:h2:": "org.h2.Driver",
    "jdbc:duckdb:": "org.duckdb.DuckDBDriver",
}


def _url(location: str, fmt: str, params: Mapping[str, Any]) -> str:
    url = params.get("url") or params.get("jdbc_url")
    conn = params.get("connection_string")
    if not url and isinstance(conn, str) and conn.startswith("jdbc:"):
        url = conn
    if not url and location.startswith("jdbc:"):
        url = location
    if not url and fmt == "sqlite":
        url = f"jdbc:sqlite:{hadoop.qualify(location)}"
    if not url:
        raise ValueError("a jdbc source needs 'url' or 'jdbc_url'")
    return str(url)


def jdbc_options(location: str, fmt: str, params: Mapping[str, Any], writing: bool) -> dict[str, str]:
    """The JDBC data source's options for reading or writing ``location`` in format ``fmt``."""
    url = _url(location, fmt, params)
    table = params.get("table") or params.get("dbtable")
    query = params.get("query")
    if not table and not query and location and not location.startswith("jdbc:") and fmt == "sql":
        table = location  # ODIBI: read("users", source_type="jdbc", jdbc_url=...)
    if writing and not table:
        raise ValueError("a jdbc write needs 'table'")
    if not table and not query:
        raise ValueError("a jdbc read needs 'table' or 'query'")
    opts: dict[str, str] = {"url": url}
    if query and not writing:
        opts["query"] = str(query)
    else:
        opts["dbtable"] = str(table)
    driver = params.get("driver") or next((d for prefix, d in _JDBC_DRIVERS.items() if url.startswith(prefix)), None)
    if driver:
        opts["driver"] = str(driver)
    for key in ("user", "password"):
        if params.get(key) is not None:
            opts[key] = str(params[key])
    opts.update(options(params))
    return opts


def read_jdbc(ctx: SparkEngineContext, source: str, fmt: str, params: Mapping[str, Any]) -> DataFrame:
    """A lazy DataFrame over a JDBC table or query."""
    opts = jdbc_options(source, fmt, params, writing=False)
    try:
        return ctx.spark.read.format("jdbc").options(**opts).load()
    except Exception as exc:
        raise RuntimeError(ctx.redact(f"jdbc read from {opts['url']} failed: {error_summary(exc)}")) from None


def write_jdbc(
    ctx: SparkEngineContext, sdf: DataFrame, target: str, fmt: str, mode: str, params: Mapping[str, Any]
) -> WriteInfo:
    """Write ``sdf`` to a JDBC table (``mode`` overwrite | append); ``WriteInfo.format`` is ``jdbc``."""
    if mode not in ("overwrite", "append"):
        raise ValueError(f"jdbc writes support mode overwrite or append, not {mode!r}")
    opts = jdbc_options(target, fmt, params, writing=True)
    if opts["url"].startswith("jdbc:sqlite:"):
        sdf = sdf.coalesce(1)  # SQLite has a single writer; parallel partitions would lock
    observed, obs = observe(sdf)
    try:
        observed.write.format("jdbc").options(**opts).mode(mode).save()
    except Exception as exc:
        raise RuntimeError(
            ctx.redact(f"jdbc write to {opts['url']} table {opts['dbtable']} failed: {error_summary(exc)}")
        ) from None
    uri = ctx.redact(f"{opts['url']}#{opts['dbtable']}")
    return WriteInfo(uri=uri, format="jdbc", rows=observed_rows(obs), extra={"mode": mode})
