"""``build_definitions``: validated pipeline configs -> one ``dagster.Definitions``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg

from odibi_dagster.config.errors import ConfigValidationError, Problem
from odibi_dagster.config.models import PipelineConfig
from odibi_dagster.config.validation import load_pipelines, validate_pipeline
from odibi_dagster.io.dataset_store import OdibiDatasetStore
from odibi_dagster.observe.metadata_keys import PIPELINE_TAG
from odibi_dagster.plan import DATASET_STORE_KEY, PANDAS_ENGINE_KEY, SPARK_ENGINE_KEY, PipelinePlan, make_plan
from odibi_dagster.translate.assets import StepRunner, build_step_assets, run_step
from odibi_dagster.translate.connections import OdibiConnection
from odibi_dagster.translate.sources import build_source_assets, observes_source
from odibi_dagster.translate.translator import OdibiStep, OdibiTranslator

PathOrConfig = str | os.PathLike[str] | PipelineConfig


def plans_for_step_process(paths_or_configs: Sequence[PathOrConfig]) -> list[PipelinePlan] | None:
    """In a step process of a multiprocess run: the plans its run process shared (see
    ``executors``) that belong to these paths, so only those are built and nothing is
    validated again. ``None`` elsewhere, or when the paths hold none of them."""
    from odibi_dagster.config.loaders import discover
    from odibi_dagster.translate.executors import shared_plans

    shared = shared_plans()
    if not shared or any(isinstance(p, PipelineConfig) for p in paths_or_configs):
        return None
    files = {f.resolve() for p in paths_or_configs for f in discover(p)}
    mine = [plan for plan in shared if plan.pipeline.source is not None and plan.pipeline.source.resolve() in files]
    return mine or None


def load_configs(paths_or_configs: Sequence[PathOrConfig]) -> list[PipelineConfig]:
    """Load (and validate) every path; validate in-memory configs. One error lists every problem."""
    paths = [p for p in paths_or_configs if not isinstance(p, PipelineConfig)]
    configs = load_pipelines(*paths) if paths else []
    configs += [validate_pipeline(c) for c in paths_or_configs if isinstance(c, PipelineConfig)]
    return configs


def build_plans(
    configs: Sequence[PipelineConfig],
    translator: OdibiTranslator,
    key_prefix: tuple[str, ...],
    base_dir: str | os.PathLike[str] | None,
) -> list[PipelinePlan]:
    def key_for(pipeline: PipelineConfig):
        return lambda step, dataset: translator.get_asset_key(OdibiStep(pipeline, step, dataset, key_prefix))

    plans = [make_plan(c, key_for(c), base_dir) for c in configs]
    for plan in plans:
        plan.source_keys = {
            s.name: translator.get_source_asset_key(OdibiStep(plan.pipeline, s, None, key_prefix))
            for s in plan.pipeline.steps
            if observes_source(s)
        }
    # A custom translator may map two steps to one key; say so before Dagster does.
    seen: dict[dg.AssetKey, tuple[str, str]] = {}
    problems: list[Problem] = []
    for plan in plans:
        named = [
            *(
                (s.name, k)
                for s in plan.pipeline.steps
                for k in ([plan.asset_keys[d] for d in dict.fromkeys(s.outputs.values())] if s.outputs else [])
            ),
            *plan.sink_keys.items(),
            *plan.source_keys.items(),
        ]
        for step, key in named:
            if key in seen:
                other_pipeline, other_step = seen[key]
                problems.append(
                    Problem(
                        str(plan.pipeline.source or plan.name),
                        step,
                        "name",
                        f"asset key {key.to_user_string()} is also the key of step '{other_step}' "
                        f"of pipeline '{other_pipeline}'",
                    )
                )
            seen.setdefault(key, (plan.name, step))
    if problems:
        raise ConfigValidationError(problems)
    return plans


def _connection_resources(plan: PipelinePlan) -> dict[str, OdibiConnection]:
    out = {}
    for step in plan.pipeline.steps:
        if step.layer == "connect":
            # Secret references ({"secret": NAME}) stay references; steps resolve them when they connect.
            # Inline passwords are masked in the resource's config and kept in this process only.
            key = plan.connection_key(step.name)
            out[key] = OdibiConnection.for_step(key, step.value, dict(step.params))
    return out


def build_definitions(
    *paths_or_configs: PathOrConfig,
    translator: OdibiTranslator | None = None,
    key_prefix: str | Sequence[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    resources: Mapping[str, Any] | None = None,
    executor: dg.ExecutorDefinition | None = None,
    step_runner: StepRunner | None = None,
) -> dg.Definitions:
    """Turn pipeline configs into Dagster definitions.

    ``paths_or_configs``: config files, directories of configs, or ``PipelineConfig``
    objects. Everything is validated first; an invalid config raises
    ``ConfigValidationError`` (listing every problem) and nothing is built.

    Returns assets (one per dataset and per store/publish step), asset checks, the
    engine resources, one dataset store, one job per pipeline, connection resources,
    schedules and sensors. ``key_prefix`` prefixes every asset key (for embedding),
    ``base_dir`` (or ``$ODIBI_BASE_DIR``) moves relative paths and working files,
    ``resources`` overrides or adds resources (e.g. a configured ``odibi_spark``).

    Each pipeline's job runs with the executor its ``executor:`` setting names (in-process by
    default); the Definitions' default executor, used by the UI's "Materialize" on a selection,
    is in-process unless a pipeline asks for multiprocess. ``executor`` replaces all of them:
    pass your deployment's executor to merge with Definitions that already set one.
    ``step_runner(context, step)`` is what each step's asset runs (default: ``step.execute()``,
    the step itself; see :class:`~odibi_dagster.StepInvocation`): wrap or replace a step's
    execution there. Merge the result into an existing deployment with ``dg.Definitions.merge``.
    """
    translator = translator or OdibiTranslator()
    prefix = (key_prefix,) if isinstance(key_prefix, str) else tuple(key_prefix or ())
    plans = plans_for_step_process(paths_or_configs) or build_plans(
        load_configs(paths_or_configs), translator, prefix, base_dir
    )
    return definitions_from_plans(
        plans, translator, prefix, resources=resources, executor=executor, step_runner=step_runner
    )


def definitions_from_plans(
    plans: Sequence[PipelinePlan],
    translator: OdibiTranslator,
    prefix: tuple[str, ...],
    *,
    resources: Mapping[str, Any] | None = None,
    executor: dg.ExecutorDefinition | None = None,
    step_runner: StepRunner | None = None,
) -> dg.Definitions:
    """The Definitions of already validated and planned pipelines (see ``build_definitions``)."""
    from odibi_dagster.engines.pandas_resource import PandasDuckDBEngine
    from odibi_dagster.translate.executors import default_executor, executor_for
    from odibi_dagster.triggers.build import build_triggers

    _allow_deep_graphs(plans)
    assets: list[Any] = []
    checks: list[Any] = []
    jobs: list[Any] = []
    schedules: list[Any] = []
    sensors: list[Any] = []
    res: dict[str, Any] = {
        PANDAS_ENGINE_KEY: _default_resource(PANDAS_ENGINE_KEY, PandasDuckDBEngine),
        DATASET_STORE_KEY: _default_resource(DATASET_STORE_KEY, OdibiDatasetStore),
    }
    for plan in plans:
        step_assets = build_step_assets(plan, translator, prefix, step_runner or run_step)
        assets += step_assets
        assets += build_source_assets(plan, translator, prefix)
        res.update(_connection_resources(plan))
        keys = [k for a in step_assets for k in a.keys]
        job = dg.define_asset_job(
            name=plan.job_name,
            executor_def=executor or executor_for(plan.pipeline.executor, [plan]),
            # The pipeline's assets and every check on them (config checks and schema-change checks).
            # Not its sources: observing is a step of its own (a process, on the multiprocess
            # executor); `odibi-dagster run` observes them before its runs, the UI on "Observe sources".
            selection=dg.AssetSelection.assets(*keys) | dg.AssetSelection.checks_for_assets(*keys),
            description=plan.pipeline.description or f"ODIBI pipeline {plan.name}",
            tags={PIPELINE_TAG: plan.name},
        )
        jobs.append(job)
        plan_schedules, plan_sensors, plan_checks = build_triggers(plan, job, step_assets)
        schedules += plan_schedules
        sensors += plan_sensors
        checks += plan_checks
    spark_plans = [p for p in plans if any(p.pipeline.step_engine(s) == "spark" for s in p.pipeline.steps)]
    if spark_plans:
        from odibi_dagster.engines.spark import SparkEngine

        # hadoop-azure for every session of the location when one Spark pipeline uses Azure storage
        # (a default object of its own: one with and one without the jars can both exist).
        azure = True if any(p.uses_azure_storage for p in spark_plans) else None
        res[SPARK_ENGINE_KEY] = _default_resource(
            f"{SPARK_ENGINE_KEY}:azure" if azure else SPARK_ENGINE_KEY, lambda: SparkEngine(azure=azure)
        )
    res.update(resources or {})
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=res,
        executor=executor or default_executor(plans),
    )


# The default resources, one object each per process: Definitions.merge accepts a resource key
# twice only for the same object, and a dg project may hold several odibi components.
_DEFAULT_RESOURCES: dict[str, Any] = {}


def _default_resource(key: str, factory: Callable[[], Any]) -> Any:
    if key not in _DEFAULT_RESOURCES:
        _DEFAULT_RESOURCES[key] = factory()
    return _DEFAULT_RESOURCES[key]


# Python frames Dagster's graph walks take per step of a chain, and a margin for the caller's own.
_FRAMES_PER_STEP = 4
_FRAMES_MARGIN = 2_000


def _allow_deep_graphs(plans: Sequence[PipelinePlan]) -> None:
    """Raise the recursion limit so Dagster's recursive graph walks (job resolution, execution
    plans) handle the longest chain validation accepts (``MAX_CHAIN_DEPTH``).

    Python 3.11 runs Python-to-Python calls without growing the C stack, so a higher limit
    costs nothing until a graph that deep is walked. The limit is only ever raised.
    """
    import sys

    steps = max((len(p.pipeline.steps) for p in plans), default=0)
    needed = _FRAMES_MARGIN + _FRAMES_PER_STEP * steps
    if needed > sys.getrecursionlimit():
        sys.setrecursionlimit(needed)
