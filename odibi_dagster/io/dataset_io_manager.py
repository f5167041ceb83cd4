"""An IO manager over odibi's dataset layout, for hand-written assets beside odibi's.

Odibi's own steps call :class:`~odibi_dagster.io.dataset_store.OdibiDatasetStore`
explicitly. This IO manager lets ordinary Dagster assets use the same layout: an asset that
returns a pandas or Spark frame is persisted like an odibi dataset, and an input (an odibi
dataset or another such asset) is loaded as a :class:`DatasetRef`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from odibi_dagster.engines.base import DatasetRef
from odibi_dagster.io.dataset_store import DatasetLayout, SparkFormat


class OdibiIOManager(dg.ConfigurableIOManager):
    """Persists returned frames under ``base_dir`` and loads inputs as :class:`DatasetRef`.

    ``base_dir`` is the work dir of the odibi pipeline whose datasets the assets share
    (``<pipeline base_dir>/.odibi``), so a hand-written asset can take an odibi dataset as input.
    """

    base_dir: str
    spark_format: SparkFormat = "delta"

    @property
    def layout(self) -> DatasetLayout:
        return DatasetLayout(self.base_dir, self.spark_format)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        if len(keys) != 1:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()}: cannot store one object for {len(keys)} partitions"
            )
        ref, info = self.layout.persist(obj, context.asset_key, keys[0])
        context.add_output_metadata(
            {"dagster/uri": dg.MetadataValue.path(ref.paths[0])}
            | ({"dagster/row_count": info.rows} if info.rows is not None else {})
        )

    def load_input(self, context: dg.InputContext) -> DatasetRef:
        keys: list[str | None] = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        return self.layout.load(context.asset_key, keys)
