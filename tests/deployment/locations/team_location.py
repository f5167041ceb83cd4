"""The "existing team" code location of the deployment test: hand-written Dagster assets that
live beside the odibi location in one workspace, each served by its own gRPC server.

* ``team/store_targets`` writes a Parquet file that the odibi pipeline ``revenue_vs_target``
  reads as an external input (``external_inputs`` in its config);
* ``team/revenue_report`` depends on the odibi asset ``sales_medallion/gold_daily_sales`` by key
  and reads it through ``OdibiIOManager`` over the odibi location's work dir.

Where things are comes from the environment the test gives the server: ``TEAM_SHARED_DIR``
(where ``store_targets`` is written) and ``ODIBI_WORK_DIR`` (the odibi location's ``.odibi``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from odibi_dagster import DatasetRef, OdibiIOManager

STORE_TARGETS = {"north": 50_000.0, "south": 40_000.0, "east": 30_000.0, "west": 20_000.0}


@dg.asset(key=["team", "store_targets"], group_name="team_planning", owners=["team:planning"], kinds={"pandas"})
def store_targets() -> dg.MaterializeResult:
    """Revenue targets per store, kept by the planning team."""
    path = Path(os.environ["TEAM_SHARED_DIR"]) / "store_targets.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"store": list(STORE_TARGETS), "target": list(STORE_TARGETS.values())})
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)  # readers in other locations see the old file or the new one
    return dg.MaterializeResult(metadata={"dagster/uri": dg.MetadataValue.path(str(path)), "dagster/row_count": 4})


@dg.asset(
    key=["team", "revenue_report"],
    group_name="team_planning",
    owners=["team:planning"],
    ins={"gold": dg.AssetIn(key=["sales_medallion", "gold_daily_sales"], input_manager_key="odibi_io")},
)
def revenue_report(gold: DatasetRef) -> dg.MaterializeResult:
    """Revenue per store over all days, from the odibi medallion's gold dataset."""
    frame = pd.read_parquet(gold.paths[0])
    per_store = frame.groupby("store")["revenue"].sum().round(2)
    return dg.MaterializeResult(
        metadata={"team/revenue": dg.MetadataValue.json(per_store.to_dict()), "dagster/row_count": len(per_store)}
    )


# The odibi asset as another location's asset: declared here by key only (a cross-location
# reference), read through the odibi layout's IO manager.
gold_daily_sales = dg.AssetSpec(["sales_medallion", "gold_daily_sales"]).with_io_manager_key("odibi_io")

defs = dg.Definitions(
    assets=[gold_daily_sales, store_targets, revenue_report],
    resources={"odibi_io": OdibiIOManager(base_dir=os.environ["ODIBI_WORK_DIR"])},
)
