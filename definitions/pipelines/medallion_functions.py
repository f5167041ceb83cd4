"""Python transforms used by the example pipelines (``type: function`` steps)."""

from __future__ import annotations

import pandas as pd


def daily_store_summary(silver: pd.DataFrame, min_sales: int = 1) -> pd.DataFrame:
    """Revenue, sales count and average ticket per store and day."""
    out = (
        silver.groupby(["sale_date", "store"], as_index=False)
        .agg(revenue=("amount", "sum"), sales=("sale_id", "count"), items=("quantity", "sum"))
        .query("sales >= @min_sales")
    )
    out["avg_ticket"] = (out["revenue"] / out["sales"]).round(2)
    out["revenue"] = out["revenue"].round(2)
    return out.sort_values(["sale_date", "store"]).reset_index(drop=True)
