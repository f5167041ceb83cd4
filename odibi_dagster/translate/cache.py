"""ODIBI's cache on Dagster's data versions: in a ``--changed-only`` run, a step that Dagster
finds fresh when its turn comes is reused (ODIBI's ``CACHED`` state) instead of computed.

``odibi-dagster run --changed-only`` selects the steps Dagster calls stale or missing and
everything downstream of them: Dagster marks a step stale only once an input's data version
has changed, which for the steps downstream of a stale one is known only after that one ran.
So each selected step asks Dagster's own stale-status resolver again when it starts (its
upstream steps of the run have materialized by then): a step whose assets are all FRESH, its
inputs having come out with the data versions it last read (a SQL edit that only reformats,
a source touched but not changed), does not compute. It reports its dataset again with the
data version, row count and schema of its last materialization, ``odibi/cache: hit``, and a
``cached`` tracker record. Nothing here decides staleness: :func:`reusable_keys` only reads
Dagster's verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG, CachingStaleStatusResolver, StaleStatus

from odibi_dagster.engines.base import Snapshot
from odibi_dagster.engines.versions import combine_versions
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
from odibi_dagster.translate.runtime import StepExecution

__all__ = ["CHANGED_ONLY_TAG", "data_version_of", "reusable_keys", "reuse_step", "stale_resolver"]

#: Run tag of the runs ``odibi-dagster run --changed-only`` starts.
CHANGED_ONLY_TAG = "odibi/changed_only"
# Metadata of the last materialization a reused dataset keeps: what describes the data, not
# the execution that produced it (its duration, the comparison with its input then).
_KEPT = ("odibi/sample", "odibi/data_version", "odibi/ingest_mode", "odibi/format", "odibi/delta_version")


def stale_resolver(
    instance: dg.DagsterInstance, asset_graph: Any, prefetch: Sequence[dg.AssetKey] = ()
) -> CachingStaleStatusResolver:
    """Dagster's own stale-status resolver (the one behind the UI's staleness) over ``asset_graph``;
    the asset records of ``prefetch`` and their parents are read in one query (as the UI does),
    not one query per asset."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._time import get_current_datetime

    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=asset_graph, loading_context=view)
    if prefetch:
        wanted = {k for key in prefetch for k in (key, *asset_graph.get(key).parent_keys)}
        resolver.instance_queryer.prefetch_asset_records(sorted(wanted))
    return resolver


def reusable_keys(
    context: dg.AssetExecutionContext, asset_keys: Sequence[dg.AssetKey], keys: Sequence[str | None]
) -> set[str | None]:
    """The partition keys (``None``: unpartitioned) of this run for which a ``--changed-only``
    run may reuse the step: Dagster calls every one of its assets FRESH. Empty in other runs."""
    if context.run.tags.get(CHANGED_ONLY_TAG) != "true":
        return set()
    graph = context.op_execution_context.job_def.asset_layer.asset_graph
    resolver = stale_resolver(context.instance, graph, asset_keys)
    return {k for k in keys if all(resolver.get_status(a, k) == StaleStatus.FRESH for a in asset_keys)}


def last_materialization(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None
) -> tuple[dict[str, Any], str | None] | None:
    """The metadata and data version of the asset's (partition's) last materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records:
        return None
    event = records[0].event_log_entry.asset_materialization
    if event is None:
        return None
    return dict(event.metadata), (event.tags or {}).get(DATA_VERSION_TAG)


def reused_metadata(previous: dict[str, Any], version: str | None, story_path: str) -> dict[str, Any]:
    """The metadata of a reused dataset: its last materialization's description of the data."""
    md = {k: v for k, v in previous.items() if k.startswith("dagster/") or k in _KEPT}
    kept = md.get("odibi/data_version")
    md.update(
        OdibiMetadataSet(
            cache="hit",
            story=dg.MetadataValue.path(story_path),
            data_version=str(kept.value) if kept is not None else version,
        )
    )
    return md


def snapshot_of(metadata: dict[str, Any]) -> Snapshot | None:
    """A tracker snapshot (rows and schema, no sample) from materialization metadata."""
    rows = metadata.get("dagster/partition_row_count") or metadata.get("dagster/row_count")
    if rows is None:
        return None
    schema = metadata.get("dagster/column_schema")
    columns = tuple((c.name, c.type) for c in schema.value.columns) if schema is not None else ()
    return Snapshot(row_count=int(rows.value), schema=columns, sample=None)


def data_version_of(per_key: Sequence[dict[str, Any]]) -> dg.DataVersion | None:
    """The data version of an output from its partitions' metadata (``odibi/data_version``): the
    one partition's, or for a range run, one version combining them (Dagster records one data
    version per output); ``None`` when one is unknown (Dagster then derives one)."""
    versions = [md.get("odibi/data_version") for md in per_key]
    if not versions or any(v is None for v in versions):
        return None
    texts = [str(getattr(v, "value", v)) for v in versions]
    return dg.DataVersion(texts[0] if len(texts) == 1 else combine_versions(texts))


def reuse_step(execution: StepExecution, asset_keys: Sequence[dg.AssetKey]) -> dict[dg.AssetKey, dict[str, Any]] | None:
    """Reuse a step's last materializations for ``execution``'s partition: their metadata per
    asset, with a ``cached`` tracker record. ``None`` when an asset has none (compute instead)."""
    out: dict[dg.AssetKey, dict[str, Any]] = {}
    for key in asset_keys:
        previous = last_materialization(execution.context.instance, key, execution.partition_key)
        if previous is None:
            return None
        out[key] = reused_metadata(previous[0], previous[1], execution.story_path)
    step = execution.step
    execution.tracker.cached_step(
        step.name,
        step.layer,
        inputs=step.inputs,
        outputs=step.outputs,
        after=snapshot_of(next(iter(out.values()))) if out else None,
        record_name=execution.record_name,
        partition_key=execution.partition_key,
    )
    execution.context.log.info(f"odibi: step '{step.name}' is fresh: reused (CACHED), not computed")
    execution.reused()
    return out
