"""Build the Dagster assets of one pipeline's steps."""

# No postponed annotations here: Dagster reads the step functions' `context` annotation as a type.

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from odibi_dagster.checks import check_spec, check_target, partition_check_events, run_check
from odibi_dagster.config.models import (
    DATA_LAYERS,
    SINK_LAYERS,
    CheckConfig,
    PartitionMappingConfig,
    PipelineConfig,
    Step,
)
from odibi_dagster.engines.base import DatasetRef
from odibi_dagster.io.dataset_store import external_dataset
from odibi_dagster.observe.metadata_keys import PIPELINE_TAG, STEP_TAG
from odibi_dagster.plan import DATASET_STORE_KEY, PipelinePlan
from odibi_dagster.translate.cache import data_version_of, reusable_keys, reuse_step
from odibi_dagster.translate.data_steps import run_data_step
from odibi_dagster.translate.runtime import StepExecution, StepRunConfig, record_failure, record_name
from odibi_dagster.translate.sink_steps import run_sink_step
from odibi_dagster.translate.translator import OdibiStep, OdibiTranslator


def partition_mapping(cfg: PartitionMappingConfig | None) -> dg.PartitionMapping | None:
    """The Dagster partition mapping of a step's inputs."""
    if cfg is None or cfg.type == "identity":
        return None
    if cfg.type == "all":
        return dg.AllPartitionMapping()
    return dg.TimeWindowPartitionMapping(start_offset=cfg.start_offset, end_offset=cfg.end_offset)


def _inputs(
    context: dg.AssetExecutionContext, plan: PipelinePlan, step: Step, keys: list[str | None]
) -> dict[str, DatasetRef]:
    """The step's inputs by logical name, in the config's order (ODIBI's "first input" is the
    before snapshot), each over the upstream partitions that feed this run's ``keys``.

    Inputs are read through the dataset store in the step's body (its outputs are ``Nothing``),
    so an input that cannot load fails the step before its tracker record starts: record it.
    """
    store = getattr(context.resources, DATASET_STORE_KEY).at(plan.work_dir)
    upstream = [_upstream_keys(context, plan, step, key) for key in keys]
    refs: dict[str, DatasetRef] = {}
    try:
        for logical, dataset in step.inputs.items():
            if dataset in plan.external_keys:  # written by an asset outside the pipeline, where it says
                ext = plan.pipeline.external_inputs[dataset]
                refs[logical] = external_dataset(plan.resolve_path(ext.path), ext.format, plan.external_keys[dataset])
                continue
            wanted: list[str | None] = [None] if keys == [None] else []
            for per_key in upstream:
                wanted += [k for k in per_key.get(logical) or [] if k not in wanted]
            refs[logical] = store.load(plan.asset_keys[dataset], wanted)
    except dg.Failure as exc:
        record_failure(plan, context.run_id, step.name, f"Failure: {exc.description}")
        raise
    return refs


def _partition_keys(context: dg.AssetExecutionContext) -> list[str | None]:
    if not context.has_partition_key and not context.has_partition_key_range:
        return [None]
    return list(context.partition_keys)


def _upstream_keys(
    context: dg.AssetExecutionContext,
    plan: PipelinePlan,
    step: Step,
    key: str | None,
) -> dict[str, list[str] | None]:
    """Per input, which upstream partitions feed downstream partition ``key``."""
    if key is None:
        return {}
    pdef = context.assets_def.partitions_def
    out: dict[str, list[str] | None] = {}
    mapping = partition_mapping(step.partition_mapping) or dg.IdentityPartitionMapping()
    for logical in step.inputs:
        subset = pdef.subset_with_partition_keys([key])
        result = mapping.get_upstream_mapped_partitions_result_for_partitions(
            subset, pdef, pdef, dynamic_partitions_store=context.instance
        )
        out[logical] = list(result.partitions_subset.get_partition_keys())
    return out


def _range_metadata(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, keys: list[str | None], per_key: list[dict[str, Any]]
) -> dict[str, Any]:
    """The metadata of an output: its own for one partition (or none); for a range run, each
    partition's metadata goes to that partition's materialization, and the output carries none."""
    if len(keys) == 1:
        return per_key[0]
    for key, metadata in zip(keys, per_key, strict=True):
        context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=key)
    return {}


@dataclass(frozen=True)
class StepInvocation:
    """One execution of a step's asset, as a step runner sees it (``build_definitions(step_runner=)``,
    ``OdibiPipelineComponent.execute``): which step, and its standard execution."""

    node: OdibiStep
    plan: PipelinePlan
    _execute: Callable[[], Iterator[Any]] = field(repr=False)

    @property
    def step(self) -> Step:
        """The step (its ``name``, ``layer``, ``value``, ``params``, ...)."""
        return self.node.step

    @property
    def pipeline(self) -> PipelineConfig:
        return self.node.pipeline

    def execute(self) -> Iterator[Any]:
        """The step's standard execution, for every partition of the run: read the inputs, run the
        step on its engine, persist or write, record it in the tracker and the story, and evaluate
        its checks. Yields what the asset yields (materializations, check results)."""
        return self._execute()


#: Runs one step's asset: gets the asset's context and the :class:`StepInvocation`, yields what the
#: asset yields. The default, :func:`run_step`, runs the standard execution.
StepRunner = Callable[[dg.AssetExecutionContext, StepInvocation], Iterable[Any]]


def run_step(context: dg.AssetExecutionContext, step: StepInvocation) -> Iterator[Any]:
    """The default step runner: the step's standard execution."""
    yield from step.execute()


def _reusable(
    context: dg.AssetExecutionContext, plan: PipelinePlan, datasets: list[str], keys: list[str | None]
) -> set[str | None]:
    """The partitions a ``--changed-only`` run may reuse: fresh in Dagster's eyes, and the datasets
    are still there (a dataset deleted by hand is computed again)."""
    fresh = reusable_keys(context, [plan.asset_keys[d] for d in datasets], keys)
    if not fresh:
        return fresh
    store = getattr(context.resources, DATASET_STORE_KEY).at(plan.work_dir)
    return {k for k in fresh if all(store.existing(plan.asset_keys[d], k) is not None for d in datasets)}


def build_step_assets(
    plan: PipelinePlan, translator: OdibiTranslator, key_prefix: tuple[str, ...], step_runner: StepRunner = run_step
) -> list[dg.AssetsDefinition]:
    """One multi-asset per ingest/transform step and one asset per store/publish step; each asset's
    body calls ``step_runner``."""
    out: list[dg.AssetsDefinition] = []
    for step in plan.pipeline.steps:
        if step.layer in DATA_LAYERS:
            out.append(_data_asset(plan, translator, key_prefix, step, step_runner))
        elif step.layer in SINK_LAYERS:
            out.append(_sink_asset(plan, translator, key_prefix, step, step_runner))
    return out


def _common(plan: PipelinePlan, translator: OdibiTranslator, node: OdibiStep, step: Step) -> dict[str, Any]:
    pdef = translator.get_partitions_def(node)
    backfill = plan.pipeline.backfill
    policy = None
    if pdef is not None and backfill is not None:
        policy = (
            dg.BackfillPolicy.single_run()
            if backfill.policy == "single_run"
            else dg.BackfillPolicy.multi_run(backfill.max_partitions_per_run or 1)
        )
    resources = {DATASET_STORE_KEY, plan.engine_key(step)}
    conn = step.params.get("connection")
    if isinstance(conn, str):
        resources.add(plan.connection_key(conn))
    return {
        "name": plan.op_name(step),
        "required_resource_keys": resources,
        "retry_policy": translator.get_retry_policy(node),
        "pool": translator.get_pool(node),
        "backfill_policy": policy,
        "config_schema": _STEP_CONFIG_SCHEMA,
        "op_tags": {STEP_TAG: step.name, PIPELINE_TAG: plan.name},
    }


# The step run config's Dagster schema, built once: inferring it from ``StepRunConfig`` per op
# was a fifth of a 5,000-step definitions build.
_STEP_CONFIG_SCHEMA = StepRunConfig.to_fields_dict()


def _step_config(context: dg.AssetExecutionContext) -> StepRunConfig:
    return StepRunConfig(**(context.op_execution_context.op_config or {}))


def _deps(plan: PipelinePlan, step: Step) -> list[dg.AssetDep]:
    """The step's inputs as asset deps, with the step's partition mapping (external inputs: Dagster's
    default mapping, since their partitions are the producing location's business); an ingest of
    files depends on its source files (``translate.sources``)."""
    mapping = partition_mapping(step.partition_mapping)
    deps = [
        dg.AssetDep(plan.input_key(ds), partition_mapping=mapping if ds in plan.asset_keys else None)
        for ds in step.inputs.values()
    ]
    if step.name in plan.source_keys:
        deps.append(dg.AssetDep(plan.source_keys[step.name]))
    return deps


def _data_asset(
    plan: PipelinePlan, translator: OdibiTranslator, key_prefix: tuple[str, ...], step: Step, runner: StepRunner
) -> dg.AssetsDefinition:
    deps = _deps(plan, step)
    datasets = list(dict.fromkeys(step.outputs.values()))
    specs = [translator.get_asset_spec(OdibiStep(plan.pipeline, step, d, key_prefix), deps=deps) for d in datasets]
    configured = step.checks if translator.settings.enable_asset_checks else []
    checks = [(c, plan.asset_keys[check_target(step, c)]) for c in configured]
    node = OdibiStep(plan.pipeline, step, datasets[0], key_prefix)
    pdef = translator.get_partitions_def(node)

    def run(context: dg.AssetExecutionContext) -> Iterator[Any]:
        config = _step_config(context)
        keys = _partition_keys(context)
        refs = _inputs(context, plan, step, keys)
        per_dataset: dict[str, list[tuple[DatasetRef, dict[str, Any]]]] = {d: [] for d in datasets}
        reusable = _reusable(context, plan, datasets, keys)
        executions: list[StepExecution] = []
        for key in keys:
            execution = StepExecution(plan, step, context, key, run_config=config, run_keys=keys)
            executions.append(execution)
            reused = reuse_step(execution, [plan.asset_keys[d] for d in datasets]) if key in reusable else None
            if reused is not None:
                store = getattr(context.resources, DATASET_STORE_KEY).at(plan.work_dir)
                results = {d: (store.load(plan.asset_keys[d], [key]), reused[plan.asset_keys[d]]) for d in datasets}
            else:
                results, _ = run_data_step(execution, refs, _upstream_keys(context, plan, step, key), config)
            for dataset, res in results.items():
                per_dataset[dataset].append(res)
        failed_checks: list[str] = []
        for dataset, items in per_dataset.items():
            asset_key = plan.asset_keys[dataset]
            version = data_version_of([md for _, md in items])
            metadata = _range_metadata(context, asset_key, keys, [md for _, md in items])
            yield dg.MaterializeResult(asset_key=asset_key, metadata=metadata, data_version=version)
            mine = [c for c, check_key in checks if check_key == asset_key]
            yield from _check_events(context, mine, asset_key, items, refs, executions, failed_checks)
        if failed_checks:
            # Dagster fails the step after its body for a failing blocking check: say so in the story.
            record_failure(
                plan,
                context.run_id,
                step.name,
                f"blocking asset check failed: {', '.join(failed_checks)}",
                [record_name(step.name, k, keys) for k in keys],
            )

    def compute(context: dg.AssetExecutionContext) -> Iterator[Any]:
        yield from runner(context, StepInvocation(node, plan, lambda: run(context)))

    return dg.multi_asset(
        specs=specs,
        check_specs=[check_spec(step, c, k, pdef) for c, k in checks] or None,
        can_subset=False,
        **_common(plan, translator, node, step),
    )(compute)


def _check_events(
    context: dg.AssetExecutionContext,
    checks: list[CheckConfig],
    asset_key: dg.AssetKey,
    items: list[tuple[DatasetRef, dict[str, Any]]],
    refs: dict[str, DatasetRef],
    executions: list[StepExecution],
    failed: list[str],
) -> Iterator[Any]:
    """The results of ``checks`` on one output, over what the step wrote for each partition key of
    the run (``items``, in the order of ``executions``); blocking failures are added to ``failed``.

    One result per check, or on a range run one per check and partition (checks are partitioned
    like their asset). A check's SQL renders like the step's SQL for that partition.
    """
    for check in checks:
        per_key = [
            (execution.partition_key, run_check(check, ref, refs, asset_key, execution.variables()))
            for (ref, _), execution in zip(items, executions, strict=True)
        ]
        failing = [key for key, result in per_key if not result.passed]
        if failing and check.severity == "error":
            where = f" ({', '.join(str(k) for k in failing)})" if len(per_key) > 1 else ""
            failed.append(f"{check.check_name} on {asset_key.to_user_string()}{where}")
        if len(per_key) == 1:
            yield per_key[0][1]  # Dagster attaches it to the run's partition, if any
        else:
            check_key = dg.AssetCheckKey(asset_key, check.check_name)
            ranged = [(str(key), result) for key, result in per_key]
            yield from partition_check_events(context, check_key, ranged, check.severity == "error")


def _sink_asset(
    plan: PipelinePlan, translator: OdibiTranslator, key_prefix: tuple[str, ...], step: Step, runner: StepRunner
) -> dg.AssetsDefinition:
    node = OdibiStep(plan.pipeline, step, None, key_prefix)
    spec = translator.get_asset_spec(node, deps=_deps(plan, step))

    def run(context: dg.AssetExecutionContext) -> Iterator[Any]:
        config = _step_config(context)
        keys = _partition_keys(context)
        refs = _inputs(context, plan, step, keys)
        asset_key = plan.sink_keys[step.name]
        reusable = reusable_keys(context, [asset_key], keys)
        per_key = []
        for key in keys:
            execution = StepExecution(plan, step, context, key, run_config=config, run_keys=keys)
            reused = reuse_step(execution, [asset_key]) if key in reusable else None
            if reused is not None:
                per_key.append(reused[asset_key])
            else:
                per_key.append(run_sink_step(execution, refs, _upstream_keys(context, plan, step, key)))
        version = data_version_of(per_key)
        yield dg.MaterializeResult(metadata=_range_metadata(context, asset_key, keys, per_key), data_version=version)

    def compute(context: dg.AssetExecutionContext) -> Iterator[Any]:
        yield from runner(context, StepInvocation(node, plan, lambda: run(context)))

    return dg.multi_asset(specs=[spec], can_subset=False, **_common(plan, translator, node, step))(compute)
