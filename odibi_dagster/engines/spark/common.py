"""What the Spark engine's readers and writers share: options from params, errors without
the Java chain and with secrets masked, row counts observed while writing."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from odibi_dagster.engines.spark.context import SparkEngineContext

log = logging.getLogger(__name__)

ENGINE = "spark"
# ODIBI params that steer the engine and are never passed to Spark as reader/writer options.
CONTROL_PARAMS = frozenset(
    {
        "keep_default_na",  # pandas' CSV null tokens (see spark.csv_nulls)
        "na_values",
        "format",
        "source_type",
        "mode",
        "merge_keys",
        "keys",
        "partition_by",
        "partitionBy",
        "single_file",
        "version",
        "versionAsOf",
        "timestamp",
        "timestampAsOf",
        "schema",
        "options",
        "table",
        "dbtable",
        "query",
        "url",
        "jdbc_url",
        "connection_string",
        "driver",
        "user",
        "password",
        "merge_schema",
        "table_format",
    }
)


def _option_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def options(params: Mapping[str, Any]) -> dict[str, str]:
    """Reader/writer options: scalar params minus ODIBI's control params, plus ``options``."""
    opts: dict[str, str] = {}
    for key, value in params.items():
        if key in CONTROL_PARAMS or value is None:
            continue
        if isinstance(value, str | int | float | bool):
            opts[key] = _option_value(value)
        else:
            log.debug("ignoring non-scalar param %r for spark options", key)
    for key, value in (params.get("options") or {}).items():
        opts[str(key)] = _option_value(value)
    return opts


def error_summary(exc: BaseException, limit: int = 3) -> str:
    """The meaningful head of an error: the Java exception's own message, not py4j's wrapper
    or the stack trace."""
    text = ""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            text = str(java.toString())
        except Exception:
            text = ""
    text = text or str(exc)
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.strip().startswith(("at ", "...", "An error occurred while calling", "Suppressed:"))
    ]
    return " | ".join(lines[:limit])[:2000] or type(exc).__name__


def failure(ctx: SparkEngineContext, exc: Exception, fmt: str, what: str) -> Exception:
    """The error to raise (``from None``) for a failed read or write, secrets masked."""
    msg = ctx.redact(str(exc))
    if fmt == "avro" and "avro" in msg.lower() and "data source" in msg.lower():
        return RuntimeError(f"cannot {what}: the spark-avro jar is not loaded; add 'avro' to SparkEngine.packages")
    if re.search(r'No FileSystem for scheme "(abfss?|wasbs?)"', msg):
        return RuntimeError(
            f"cannot {what}: the session was started without the hadoop-azure jars; "
            "configure the odibi_spark resource with SparkEngine(azure=True)"
        )
    return RuntimeError(ctx.redact(f"cannot {what} as {fmt}: {error_summary(exc)}"))


def write_mode(fmt: str, params: Mapping[str, Any]) -> str:
    """The ``mode`` param (``overwrite`` by default); ``merge`` is Delta's only."""
    mode = str(params.get("mode") or "overwrite").lower()
    if mode == "merge" and fmt != "delta":
        raise ValueError(f"mode 'merge' needs format delta, not {fmt}")
    return mode


def observe(sdf: DataFrame) -> tuple[DataFrame, Any]:
    """Count rows while the write runs instead of a second pass over the data."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    obs = Observation()
    return sdf.observe(obs, F.count(F.lit(1)).alias("rows")), obs


def observed_rows(obs: Any) -> int | None:
    """The rows an :func:`observe`d write wrote (None when it wrote nothing)."""
    # Observation.get blocks until an action fires; a write that did nothing
    # (mode ignore) never fires, so peek first.
    try:
        if obs._jo is None or obs._jo.getOrEmpty().isEmpty():
            return None
        return int(obs.get["rows"])
    except Exception:
        return None
