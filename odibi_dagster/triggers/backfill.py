"""Backfill policy of a pipeline (``backfill: {policy, max_partitions_per_run}``).

The assets carry a Dagster ``BackfillPolicy`` (``translate.assets._common``: ``single_run`` ->
``BackfillPolicy.single_run()``, ``multi_run`` -> ``BackfillPolicy.multi_run(max_partitions_per_run
or 1)``), which the UI's backfills and the backfill daemon follow. :func:`backfill_run_tags`
applies the same policy to a range launched outside the daemon (``odibi-dagster run --partition
START...END``).
"""

from __future__ import annotations

import dagster as dg

from odibi_dagster.config.models import BackfillConfig

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"


def backfill_run_tags(
    pdef: dg.PartitionsDefinition,
    cfg: BackfillConfig | None,
    start: str,
    end: str,
    instance: dg.DagsterInstance | None = None,
) -> list[dict[str, str]]:
    """The run tags of each run a backfill over ``start``..``end`` (inclusive) takes under ``cfg``.

    One ``dagster/partition`` tag for a one-partition run, a ``dagster/asset_partition_range_*``
    pair for a run over several. Raises ``ValueError`` when a key is not a partition.
    """
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        for key in (start, end):
            if not pdef.has_partition_key(key):
                raise ValueError(f"'{key}' is not a partition of this pipeline")
        keys = list(pdef.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    if not keys:
        raise ValueError(f"'{start}...{end}' holds no partitions (is the start after the end?)")
    size = len(keys)
    if cfg is None or cfg.policy == "multi_run":
        size = (cfg.max_partitions_per_run if cfg is not None else None) or 1
    out: list[dict[str, str]] = []
    for i in range(0, len(keys), size):
        chunk = keys[i : i + size]
        out.append(
            {PARTITION_TAG: chunk[0]} if len(chunk) == 1 else {RANGE_START_TAG: chunk[0], RANGE_END_TAG: chunk[-1]}
        )
    return out
