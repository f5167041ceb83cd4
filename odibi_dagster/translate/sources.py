"""An ingest step's source files as an observable source asset (ODIBI's cache input hash).

Each ingest of files gets an external asset upstream of it, keyed ``[pipeline, "source", step]``
and grouped with the pipeline, whose observation returns the files' data version (a hash of
their sizes and modification times, or ETags). Dagster then marks the ingest, and so what
follows it, stale when a source changes, shows the source in the asset graph, and offers
"Observe sources". A source whose path is templated by the partition is a partitioned asset
observed partition by partition (``DataVersionsByPartition``).

Observations happen when ``odibi-dagster run`` starts on a persistent instance (so an ingest
records the version of the files it reads), on "Observe sources" in the UI, and with
``observe_sources: <cron>`` on the pipeline, on that schedule through Dagster's automation
sensor. They are not a step of the pipeline's job: on the multiprocess executor each would be
a process of its own before the ingest.
"""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from odibi_dagster.config.models import FileWatchSensorConfig, Step
from odibi_dagster.config.templating import EnvNamespace, has_template, render_text, template_variables
from odibi_dagster.engines.formats.table import REFERENCE_FORMATS, canonical_format, is_database_url
from odibi_dagster.engines.source_ref import fingerprint
from odibi_dagster.engines.versions import source_version
from odibi_dagster.observe.metadata_keys import STEP_TAG, OdibiMetadataSet
from odibi_dagster.plan import PipelinePlan
from odibi_dagster.translate.runtime import partition_variables
from odibi_dagster.translate.translator import OdibiStep, OdibiTranslator
from odibi_dagster.triggers.sensors.file_watch import dynamic_file_source

__all__ = ["build_source_assets", "observe_sources", "observes_source"]

_PARTITION_VARIABLES = {"partition_key", "partition_keys", "partition_start", "partition_end"}
# A source templated by anything else (run_id, watermarks) names no files before a run.
_OBSERVABLE_VARIABLES = _PARTITION_VARIABLES | {"pipeline", "env"}
_DATABASE_PARAMS = ("connection", "connection_string", "jdbc_url", "url")


def observes_source(step: Step) -> bool:
    """Whether ``step`` ingests files whose versions can be observed (not a database, an API, a
    custom reader, or a path that depends on the run)."""
    if step.layer != "ingest" or step.type in ("function", "api", "sql") or not step.value:
        return False
    if any(step.params.get(k) for k in _DATABASE_PARAMS):
        return False
    value = str(step.value)
    if is_database_url(value) or value.lower().startswith(("http://", "https://")):
        return False
    explicit = step.params.get("format") or step.params.get("source_type")
    if explicit:
        try:
            if canonical_format(str(explicit)) not in REFERENCE_FORMATS:
                return False
        except ValueError:
            return False
    elif value.lower().endswith((".db", ".sqlite", ".sqlite3")):
        return False
    try:
        return not has_template(value) or template_variables(value) <= _OBSERVABLE_VARIABLES
    except Exception:  # a syntax error: validation reports it
        return False


def _partitioned(plan: PipelinePlan, step: Step) -> bool:
    """Whether the source differs by partition (templated path, or a file per dynamic partition)."""
    if plan.pipeline.partitions is None:
        return False
    if has_template(step.value) and template_variables(step.value) & _PARTITION_VARIABLES:
        return True
    dynamic = plan.pipeline.partitions.type == "dynamic"
    return any(
        isinstance(s, FileWatchSensorConfig) and s.step == step.name and (s.dynamic_partitions or dynamic)
        for s in plan.pipeline.sensors
    )


def _source_path(plan: PipelinePlan, step: Step, pdef: dg.PartitionsDefinition | None, key: str | None) -> str:
    if key is not None:
        landed = dynamic_file_source(plan, step, key)
        if landed is not None:
            return landed
    variables: dict[str, Any] = {"pipeline": plan.name, "env": EnvNamespace()}
    if key is not None:
        variables.update(partition_variables(pdef, key, [key]))
    return plan.resolve_value(render_text(step.value, variables), dict(step.params))


def _version(path: str) -> tuple[str, int]:
    """The data version of the files at ``path`` and how many there are."""
    try:
        prints = fingerprint(path)
    except (FileNotFoundError, NotADirectoryError):
        prints = []
    return source_version(prints), len(prints)


def source_versions(
    plan: PipelinePlan, step: Step, pdef: dg.PartitionsDefinition | None, keys: list[str] | None
) -> dict[str | None, tuple[str, str, int]]:
    """Per partition key (``None`` unpartitioned): the source path, its data version, its file count."""
    out: dict[str | None, tuple[str, str, int]] = {}
    for key in keys if pdef is not None and keys is not None else [None]:
        path = _source_path(plan, step, pdef, key)
        out[key] = (path, *_version(path))
    return out


def _observe_fn(plan: PipelinePlan, step: Step, pdef: dg.PartitionsDefinition | None):
    def observe(context: dg.OpExecutionContext) -> dg.ObserveResult | dg.DataVersionsByPartition:
        if pdef is None:
            ((path, version, files),) = source_versions(plan, step, None, None).values()
            return dg.ObserveResult(
                data_version=dg.DataVersion(version),
                metadata={"dagster/uri": dg.MetadataValue.text(path), **OdibiMetadataSet(source_files=files)},
            )
        if context.has_partition_key or context.has_partition_key_range:
            keys = list(context.partition_keys)
        else:  # "Observe sources" in the UI, or the automation sensor: every partition
            with dg.partition_loading_context(dynamic_partitions_store=context.instance):
                keys = list(pdef.get_partition_keys())
        versions = source_versions(plan, step, pdef, keys)
        return dg.DataVersionsByPartition({k: dg.DataVersion(v) for k, (_p, v, _n) in versions.items() if k})

    return observe


def _automation(plan: PipelinePlan, partitioned: bool) -> dg.AutomationCondition | None:
    """``observe_sources: <cron>``: observe on that schedule (the latest partition only, for
    time-partitioned sources: that is where files land)."""
    cron = plan.pipeline.observe_sources
    if not cron:
        return None
    timezone = plan.pipeline.schedule.timezone if plan.pipeline.schedule else "UTC"
    condition = dg.AutomationCondition.cron_tick_passed(cron, timezone) & ~dg.AutomationCondition.in_progress()
    parts = plan.pipeline.partitions
    if partitioned and parts is not None and parts.type not in ("static", "dynamic"):
        condition = condition & dg.AutomationCondition.in_latest_time_window()
    return condition


def build_source_assets(plan: PipelinePlan, translator: OdibiTranslator, key_prefix: tuple[str, ...]) -> list[Any]:
    """One observable source asset per ingest of files (``plan.source_keys``)."""
    out = []
    for step in plan.pipeline.steps:
        key = plan.source_keys.get(step.name)
        if key is None:
            continue
        node = OdibiStep(plan.pipeline, step, None, key_prefix)
        partitioned = _partitioned(plan, step)
        pdef = translator.get_partitions_def(node) if partitioned else None
        with warnings.catch_warnings():  # observable source assets are beta in Dagster; we want them
            warnings.simplefilter("ignore", dg.BetaWarning)
            asset = dg.observable_source_asset(
                key=key,
                description=f"Source files of step '{step.name}': `{step.value}`",
                group_name=translator.get_group_name(node),
                partitions_def=pdef,
                automation_condition=_automation(plan, partitioned),
                op_tags={STEP_TAG: step.name},
                tags={"dagster/kind/odibi": "", "dagster/kind/files": ""},
                metadata={**OdibiMetadataSet(step=step.name, layer="source")},
            )(_observe_fn(plan, step, pdef))
        out.append(asset)
    return out


def observe_sources(plan: PipelinePlan, instance: dg.DagsterInstance, keys: list[str] | None) -> int:
    """Observe the pipeline's sources now (``keys``: the partitions to observe, ``None`` for all or
    unpartitioned), recording each version as a runless observation. Returns how many."""
    from odibi_dagster.config.partitions import build_partitions_def

    count = 0
    for step in plan.pipeline.steps:
        key = plan.source_keys.get(step.name)
        if key is None:
            continue
        pdef = build_partitions_def(plan.pipeline.partitions, plan.pipeline.name) if _partitioned(plan, step) else None
        wanted = keys
        if pdef is not None and wanted is None:
            with dg.partition_loading_context(dynamic_partitions_store=instance):
                wanted = list(pdef.get_partition_keys())
        for partition, (path, version, files) in source_versions(plan, step, pdef, wanted).items():
            instance.report_runless_asset_event(
                dg.AssetObservation(
                    asset_key=key,
                    partition=partition,
                    tags={DATA_VERSION_TAG: version},
                    metadata={"dagster/uri": dg.MetadataValue.text(path), **OdibiMetadataSet(source_files=files)},
                )
            )
            count += 1
    return count
