"""pandas' CSV semantics on Spark: the same null tokens and the same inferred types as the
pandas engine, so a CSV gives the same ``COUNT(col)`` and schema on both engines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["pandas_null_read"]


def pandas_null_read(reader: Any, path: str, opts: dict[str, str], params: Mapping[str, Any]) -> Any:
    """Load the CSV at ``path`` with ``reader`` and ``opts``; unless a schema, ``nullValue`` or
    ``inferSchema: false`` is given, with pandas' null tokens and type inference."""
    from odibi_dagster.engines.formats.csv import csv_null_tokens

    # Spark reads empty fields as null already: only the other tokens need work.
    tokens = [t for t in csv_null_tokens(params) if t]
    pandas_nulls = (
        bool(tokens)
        and params.get("schema") is None
        and str(opts.get("inferSchema", "true")).lower() == "true"
        and "nullValue" not in opts
    )
    if not pandas_nulls:
        return reader.options(**opts).load(path)
    return _with_pandas_nulls(reader.options(**{**opts, "inferSchema": "false"}).load(path), tokens)


def _with_pandas_nulls(sdf: Any, tokens: list[str]) -> Any:
    """A CSV read as text, with pandas' null tokens made null and each column given the type
    pandas would infer (boolean, bigint, double, else string): one aggregate pass, as Spark's
    own inferSchema makes one."""
    from pyspark.sql import functions as F

    cleaned = sdf.select(
        [F.when(F.col(f"`{c}`").isin(tokens), None).otherwise(F.col(f"`{c}`")).alias(c) for c in sdf.columns]
    )
    tests = {
        "boolean": lambda c: F.lower(c).isin("true", "false"),
        "bigint": lambda c: c.rlike(r"^\s*[+-]?[0-9]{1,18}\s*$"),
        "double": lambda c: c.try_cast("double").isNotNull(),
    }
    aggs = [
        F.sum(F.when(F.col(f"`{c}`").isNotNull() & ~test(F.col(f"`{c}`")), 1).otherwise(0)).alias(f"{c}\x00{t}")
        for c in cleaned.columns
        for t, test in tests.items()
    ]
    if not aggs:
        return cleaned
    aggs += [F.count(F.col(f"`{c}`")).alias(f"{c}\x00count") for c in cleaned.columns]
    misses = cleaned.agg(*aggs).collect()[0].asDict()
    out = []
    for c in cleaned.columns:
        # An all-null column is float64 in pandas.
        kind = (
            "double" if not misses[f"{c}\x00count"] else next((t for t in tests if not misses[f"{c}\x00{t}"]), "string")
        )
        col = F.col(f"`{c}`")
        out.append(
            (F.lower(col) == "true" if kind == "boolean" else col.cast(kind)).alias(c)
            if kind != "string"
            else col.alias(c)
        )
    return cleaned.select(out)
