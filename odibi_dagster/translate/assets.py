"""Build the Dagster assets of one pipeline's steps."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from functools import partial
from typing import Any

import dagster as dg

from odibi_dagster.checks import check_spec, check_target, run_check
from odibi_dagster.config.models import DATA_LAYERS, SINK_LAYERS, PartitionMappingConfig, Step
from odibi_dagster.config.names import dagster_name
from odibi_dagster.engines.base import DatasetRef
from odibi_dagster.io.dataset_io_manager import LOAD_FAILURE_LISTENERS
from odibi_dagster.plan import PipelinePlan
from odibi_dagster.translate.runtime import (
    StepExecution,
    StepRunConfig,
    record_failure,
    record_name,
    run_data_step,
    run_sink_step,
)
from odibi_dagster.translate.translator import OdibiStep, OdibiTranslator


def partition_mapping(cfg: PartitionMappingConfig | None) -> dg.PartitionMapping | None:
    """The Dagster partition mapping of a step's inputs."""
    if cfg is None or cfg.type == "identity":
        return None
    if cfg.type == "all":
        return dg.AllPartitionMapping()
    return dg.TimeWindowPartitionMapping(start_offset=cfg.start_offset, end_offset=cfg.end_offset)


def _input_names(step: Step) -> dict[str, str]:
    """Dagster input name -> logical input name (logical names may not be identifiers)."""
    names: dict[str, str] = {}
    for logical in step.inputs:
        name = dagster_name(logical)
        while name in names or name in ("context", "config"):
            name = f"{name}_"
        names[name] = logical
    return names


def _with_signature(fn: Any, input_names: list[str]) -> Any:
    # Dagster reads an asset's inputs off its signature; steps have config-defined inputs.
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [
        inspect.Parameter("context", kind, annotation=dg.AssetExecutionContext),
        inspect.Parameter("config", kind, annotation=StepRunConfig),
        *[inspect.Parameter(n, kind) for n in input_names],
    ]
    fn.__signature__ = inspect.Signature(params)
    return fn


def _refs_in_step_order(step: Step, names: dict[str, str], kwargs: dict[str, Any]) -> dict[str, DatasetRef]:
    """Inputs by logical name, in the config's order (ODIBI's "first input" is the before snapshot)."""
    by_logical = {names[n]: v for n, v in kwargs.items()}
    return {logical: by_logical[logical] for logical in step.inputs}


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


def _input_failed(plan: PipelinePlan, step: str, run_id: str, message: str) -> None:
    record_failure(plan, run_id, step, message)


def build_step_assets(
    plan: PipelinePlan, translator: OdibiTranslator, key_prefix: tuple[str, ...]
) -> list[dg.AssetsDefinition]:
    """One multi-asset per ingest/transform step and one asset per store/publish step."""
    out: list[dg.AssetsDefinition] = []
    for step in plan.pipeline.steps:
        if step.layer in (*DATA_LAYERS, *SINK_LAYERS):
            LOAD_FAILURE_LISTENERS[plan.op_name(step)] = partial(_input_failed, plan, step.name)
        if step.layer in DATA_LAYERS:
            out.append(_data_asset(plan, translator, key_prefix, step))
        elif step.layer in SINK_LAYERS:
            out.append(_sink_asset(plan, translator, key_prefix, step))
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
    resources = {plan.io_manager_key, plan.engine_key(step)}
    conn = step.params.get("connection")
    if isinstance(conn, str):
        resources.add(plan.connection_key(conn))
    return {
        "name": plan.op_name(step),
        "required_resource_keys": resources,
        "retry_policy": translator.get_retry_policy(node),
        "backfill_policy": policy,
        "op_tags": {"odibi/step": step.name, "odibi/pipeline": plan.name},
    }


def _ins(plan: PipelinePlan, step: Step, names: dict[str, str], *, via_deps: bool = False) -> dict[str, dg.AssetIn]:
    if via_deps:  # the spec's AssetDeps carry the partition mapping
        return {name: dg.AssetIn(key=plan.asset_keys[step.inputs[logical]]) for name, logical in names.items()}
    mapping = partition_mapping(step.partition_mapping)
    return {
        name: dg.AssetIn(key=plan.asset_keys[step.inputs[logical]], partition_mapping=mapping, dagster_type=dg.Any)
        for name, logical in names.items()
    }


def _data_asset(
    plan: PipelinePlan, translator: OdibiTranslator, key_prefix: tuple[str, ...], step: Step
) -> dg.AssetsDefinition:
    names = _input_names(step)
    outs: dict[str, dg.AssetOut] = {}
    output_names: dict[str, str] = {}  # dataset -> output name
    for dataset in dict.fromkeys(step.outputs.values()):
        node = OdibiStep(plan.pipeline, step, dataset, key_prefix)
        spec = translator.get_asset_spec(node)
        out_name = dagster_name(dataset)
        outs[out_name] = dg.AssetOut.from_spec(spec, dagster_type=dg.Any, io_manager_key=plan.io_manager_key)
        output_names[dataset] = out_name
    checks = [(c, plan.asset_keys[check_target(step, c)]) for c in step.checks]
    node = OdibiStep(plan.pipeline, step, next(iter(step.outputs.values())), key_prefix)
    common = _common(plan, translator, node, step)

    def compute(context: dg.AssetExecutionContext, config: StepRunConfig, **kwargs: Any) -> Iterator[Any]:
        refs = _refs_in_step_order(step, names, kwargs)
        per_dataset: dict[str, list[tuple[DatasetRef, dict[str, Any]]]] = {d: [] for d in output_names}
        keys = _partition_keys(context)
        execution = None
        for key in keys:
            execution = StepExecution(plan, step, context, key, run_config=config, run_keys=keys)
            results, _ = run_data_step(execution, refs, _upstream_keys(context, plan, step, key), config)
            for dataset, res in results.items():
                per_dataset[dataset].append(res)
        failed_checks: list[str] = []
        for dataset, items in per_dataset.items():
            ref = DatasetRef(
                tuple(p for r, _ in items for p in r.paths),
                items[0][0].format,
                items[0][0].asset_key,
                tuple(k for r, _ in items for k in r.partition_keys),
            )
            yield dg.Output(
                ref,
                output_name=output_names[dataset],
                metadata=_range_metadata(context, plan.asset_keys[dataset], keys, [md for _, md in items]),
            )
            for check, check_key in checks:
                if plan.asset_keys[check_target(step, check)] == plan.asset_keys[dataset]:
                    # Check SQL renders like the step's (a range run: the last key, and partition_keys).
                    result = run_check(check, ref, refs, check_key, execution.variables() if execution else None)
                    if not result.passed and check.severity == "error":
                        failed_checks.append(f"{check.check_name} on {check_key.to_user_string()}")
                    yield result
        if failed_checks:
            # Dagster fails the step after its body for a failing blocking check: say so in the story.
            record_failure(
                plan,
                context.run_id,
                step.name,
                f"blocking asset check failed: {', '.join(failed_checks)}",
                [record_name(step.name, k, keys) for k in keys],
            )

    return dg.multi_asset(
        outs=outs,
        ins=_ins(plan, step, names),
        check_specs=[check_spec(step, c, k) for c, k in checks] or None,
        can_subset=False,
        **common,
    )(_with_signature(compute, list(names)))


def _sink_asset(
    plan: PipelinePlan, translator: OdibiTranslator, key_prefix: tuple[str, ...], step: Step
) -> dg.AssetsDefinition:
    names = _input_names(step)
    input_keys = [plan.asset_keys[step.inputs[logical]] for logical in names.values()]
    node = OdibiStep(plan.pipeline, step, None, key_prefix)
    mapping = partition_mapping(step.partition_mapping)
    spec = translator.get_asset_spec(node, deps=[dg.AssetDep(k, partition_mapping=mapping) for k in input_keys])
    # The inputs (with their partition mapping) are the deps; an AssetOut carries no deps. An
    # explicit output name keeps step names like "Save Gold" (free text in ODIBI's tables) valid:
    # Dagster would derive it from the asset key and refuse spaces.
    extra_deps = [d for d in spec.deps if d.asset_key not in input_keys]
    out = dg.AssetOut.from_spec(spec.replace_attributes(deps=[]), dagster_type=dg.Nothing)
    common = _common(plan, translator, node, step)

    def compute(context: dg.AssetExecutionContext, config: StepRunConfig, **kwargs: Any) -> Iterator[Any]:
        refs = _refs_in_step_order(step, names, kwargs)
        keys = _partition_keys(context)
        per_key = []
        for key in keys:
            execution = StepExecution(plan, step, context, key, run_config=config, run_keys=keys)
            per_key.append(run_sink_step(execution, refs, _upstream_keys(context, plan, step, key)))
        yield dg.MaterializeResult(metadata=_range_metadata(context, plan.sink_keys[step.name], keys, per_key))

    return dg.multi_asset(
        outs={f"{dagster_name(step.name)}__target": out},
        ins=_ins(plan, step, names),
        deps=extra_deps or None,
        can_subset=False,
        **common,
    )(_with_signature(compute, list(names)))
