"""Python transforms used by the example pipelines (``type: function`` steps).

A function step gets its inputs as the engine's DataFrames (pandas on the pandas
engine, Spark on the Spark engine), so this one handles both: the same config runs
on either engine.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def daily_store_summary(silver: Any, min_sales: int = 1) -> Any:
    """Revenue, sales count, items and average ticket per store and day."""
    if isinstance(silver, pd.DataFrame):
        out = (
            silver.groupby(["sale_date", "store"], as_index=False)
            .agg(revenue=("amount", "sum"), sales=("sale_id", "count"), items=("quantity", "sum"))
            .query("sales >= @min_sales")
        )
        out["avg_ticket"] = (out["revenue"] / out["sales"]).round(2)
        out["revenue"] = out["revenue"].round(2)
        return out.sort_values(["sale_date", "store"]).reset_index(drop=True)

    from pyspark.sql import functions as F  # the Spark engine

    out = (
        silver.groupBy("sale_date", "store")
        .agg(F.sum("amount").alias("revenue"), F.count("sale_id").alias("sales"), F.sum("quantity").alias("items"))
        .where(F.col("sales") >= min_sales)
    )
    return out.select(
        "sale_date",
        "store",
        F.round("revenue", 2).alias("revenue"),
        "sales",
        "items",
        F.round(F.col("revenue") / F.col("sales"), 2).alias("avg_ticket"),
    ).orderBy("sale_date", "store")
