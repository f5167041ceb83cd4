"""``odibi-dagster run --changed-only``: run only the steps Dagster calls stale or missing.

Before each run the pipeline's sources are observed (their files' data versions recorded), then
Dagster's own stale-status resolver (the one behind the UI's "Unsynced" badges and its
"Materialize unsynced" button) says which of the pipeline's assets are STALE (a new code
version, a new data version upstream, a changed source) or MISSING, per partition. Those steps
and everything downstream of them run, in one run tagged ``odibi/changed_only`` (see
``translate.cache`` for how a downstream step is still reused when its inputs came out
unchanged); every other step gets ODIBI's ``cached`` record in the run's story. Nothing stale:
no run at all.

Staleness needs the instance that recorded the previous runs: ``$DAGSTER_HOME`` when set, else
a SQLite instance under the pipeline's work dir (``.odibi/dagster/``), which later plain runs
keep using once it exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.data_version import StaleStatus

from odibi_dagster.engines import paths
from odibi_dagster.observe.tracker import RunTracker
from odibi_dagster.plan import PipelinePlan
from odibi_dagster.translate.cache import CHANGED_ONLY_TAG, last_materialization, snapshot_of, stale_resolver
from odibi_dagster.translate.runtime import publish_story, record_name
from odibi_dagster.translate.sources import observe_sources
from odibi_dagster.triggers.backfill import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG

__all__ = ["ChangedRun", "changed_runs", "instance_home", "record_cached_steps"]

#: The CLI's own instance, under a pipeline's work dir, when ``$DAGSTER_HOME`` is not set.
INSTANCE_DIR = "dagster"


def instance_home(plan: PipelinePlan, create: bool) -> str | None:
    """``<work_dir>/dagster``, the CLI's persistent instance (created when ``create``); ``None``
    when it does not exist (and is not to be created) or the work dir is remote."""
    if paths.is_remote(plan.work_dir):
        return None
    home = Path(plan.work_dir) / INSTANCE_DIR
    if not (home / "dagster.yaml").exists():
        if not create:
            return None
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return str(home)


@dataclass
class ChangedRun:
    """One run of a ``--changed-only`` invocation: its tags, what Dagster calls stale or missing,
    and what runs (those and their downstream); ``fresh`` steps get a ``cached`` record."""

    tags: dict[str, str]
    partitions: list[str | None]
    stale: list[dg.AssetKey]
    selection: list[dg.AssetKey]
    fresh: list[str] = field(default_factory=list)
    #: Steps with a stale or missing asset, and steps that run (those and their downstream).
    stale_steps: list[str] = field(default_factory=list)
    run_steps: list[str] = field(default_factory=list)


def step_keys(plan: PipelinePlan) -> dict[str, list[dg.AssetKey]]:
    """Each step's assets (connect steps have none)."""
    out: dict[str, list[dg.AssetKey]] = {}
    for step in plan.pipeline.steps:
        keys = [plan.asset_keys[d] for d in dict.fromkeys(step.outputs.values())] if step.layer != "connect" else []
        if step.name in plan.sink_keys:
            keys.append(plan.sink_keys[step.name])
        if keys:
            out[step.name] = keys
    return out


def run_partitions(job: dg.JobDefinition, tags: dict[str, str], instance: dg.DagsterInstance) -> list[str | None]:
    """The partition keys a run with ``tags`` covers (``[None]``: unpartitioned)."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    if RANGE_START_TAG in tags and job.partitions_def is not None:
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            return list(
                job.partitions_def.get_partition_keys_in_range(
                    dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
                )
            )
    return [None]


def changed_runs(
    defs: dg.Definitions,
    job: dg.JobDefinition,
    plan: PipelinePlan,
    instance: dg.DagsterInstance,
    tag_sets: Sequence[dict[str, str]],
    selected: Sequence[dg.AssetKey] | None,
) -> list[ChangedRun]:
    """Observe the sources, then one :class:`ChangedRun` per run of ``tag_sets`` (within the
    ``selected`` steps' assets, all when ``None``)."""
    per_run = [run_partitions(job, tags, instance) for tags in tag_sets]
    wanted = sorted({k for keys in per_run for k in keys if k is not None})
    observe_sources(plan, instance, wanted or None)
    graph = defs.resolve_asset_graph()
    by_step = step_keys(plan)
    scope = set(selected) if selected is not None else {k for keys in by_step.values() for k in keys}
    keys = [k for ks in by_step.values() for k in ks if k in scope]
    resolver = stale_resolver(instance, graph, keys)
    statuses = {p: {k: resolver.get_status(k, p) for k in keys} for run in per_run for p in run}

    def stale_in(partition: str | None) -> list[dg.AssetKey]:
        return [k for k, status in statuses[partition].items() if status in (StaleStatus.STALE, StaleStatus.MISSING)]

    out = []
    for tags, partitions in _split_ranges(tag_sets, per_run, statuses):
        stale = list(dict.fromkeys(k for p in partitions for k in stale_in(p)))
        selection: set[dg.AssetKey] = set()
        if stale:
            selection = dg.AssetSelection.assets(*stale).downstream().resolve(graph) & scope
        ordered = [k for keys in by_step.values() for k in keys if k in selection]
        in_scope = {name: keys for name, keys in by_step.items() if scope & set(keys)}
        out.append(
            ChangedRun(
                {**tags, CHANGED_ONLY_TAG: "true"},
                partitions,
                stale,
                ordered,
                fresh=[name for name, keys in in_scope.items() if not selection & set(keys)],
                stale_steps=[name for name, keys in in_scope.items() if set(stale) & set(keys)],
                run_steps=[name for name, keys in in_scope.items() if selection & set(keys)],
            )
        )
    return out


def _split_ranges(
    tag_sets: Sequence[dict[str, str]],
    per_run: list[list[str | None]],
    statuses: dict[str | None, dict[dg.AssetKey, StaleStatus]],
) -> list[tuple[dict[str, str], list[str | None]]]:
    """Each run's tags and partitions, a range (``backfill: single_run``) split up: Dagster records
    one data version per asset for a whole range run, so a partition run in a range with others
    would get a data version that changes whenever any partition of the range does, and its
    downstream would look changed. A partition that has something to do runs alone (its data
    versions stay its own); consecutive partitions never materialized yet (nothing to compare
    with) run as one range; consecutive partitions with nothing to do are one "nothing changed"."""
    out: list[tuple[dict[str, str], list[str | None]]] = []
    for tags, partitions in zip(tag_sets, per_run, strict=True):
        if RANGE_START_TAG not in tags:
            out.append((tags, partitions))
            continue
        base = {k: v for k, v in tags.items() if k not in (RANGE_START_TAG, RANGE_END_TAG)}
        groups: list[tuple[str, list[str | None]]] = []
        for partition in partitions:
            found = set(statuses[partition].values())
            kind = "fresh" if found <= {StaleStatus.FRESH} else "new" if found == {StaleStatus.MISSING} else "alone"
            if groups and groups[-1][0] == kind and kind != "alone":
                groups[-1][1].append(partition)
            else:
                groups.append((kind, [partition]))
        for _kind, group in groups:
            first, last = str(group[0]), str(group[-1])
            ranged = {PARTITION_TAG: first} if len(group) == 1 else {RANGE_START_TAG: first, RANGE_END_TAG: last}
            out.append(({**base, **ranged}, group))
    return out


def record_cached_steps(plan: PipelinePlan, instance: dg.DagsterInstance, run_id: str, change: ChangedRun) -> list[str]:
    """Give the run's story a ``cached`` record of every step the run did not select (with its
    last materialization's row count and schema), publish it, and return progress lines."""
    tracker = RunTracker(plan.stories_dir, plan.name, run_id, sample_rows=plan.pipeline.story.sample_rows)
    by_step = step_keys(plan)
    steps = {s.name: s for s in plan.pipeline.steps}
    lines = []
    for name in change.fresh:
        step = steps[name]
        rows = 0
        for partition in change.partitions:
            previous = last_materialization(instance, by_step[name][0], partition)
            after = snapshot_of(previous[0]) if previous is not None else None
            rows += after.row_count if after is not None else 0
            tracker.cached_step(
                name,
                step.layer,
                inputs=step.inputs,
                outputs=step.outputs,
                after=after,
                record_name=record_name(name, partition, change.partitions),
                partition_key=partition,
            )
        lines.append(f"  cached {name:<31} {f'{rows} rows':>14}    (fresh)")
    if change.fresh:
        publish_story(plan, tracker)
    return lines
