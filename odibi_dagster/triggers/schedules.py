"""Schedules of a pipeline (``schedule: {cron, timezone}``); the cron and interval rules
live in ``config.schedules``, shared with validation."""

from __future__ import annotations

from typing import Any

import dagster as dg

from odibi_dagster.config.names import dagster_name
from odibi_dagster.config.partitions import build_partitions_def, latest_complete_partition
from odibi_dagster.plan import PipelinePlan


def schedule_name(plan: PipelinePlan) -> str:
    """``schedule.name`` (made a valid Dagster name) or ``<pipeline>_schedule``."""
    sch = plan.pipeline.schedule
    return dagster_name(sch.name) if sch is not None and sch.name else f"{plan.job_name}_schedule"


def build_schedule(plan: PipelinePlan, job: Any) -> dg.ScheduleDefinition | None:
    """``schedule: {cron, timezone}`` -> a Dagster schedule on the pipeline's job.

    The cron expression is evaluated in ``schedule.timezone``. On a time-partitioned
    pipeline each tick runs the latest *complete* partition at the tick's time (in the
    partitions' own timezone), with the partition key as run key so a partition is
    scheduled once however often the cron fires. Static partitions run every value on each
    tick, dynamic partitions every key known at the tick. ``every:`` (ODIBI's interval
    mode) is a sensor instead (see ``sensors.build_interval_sensor``).

    Dagster's ``build_schedule_from_partitioned_job`` is not used: it takes its cadence and
    timezone from the partitions and refuses a cron or timezone of its own.
    """
    sch = plan.pipeline.schedule
    if sch is None or sch.cron is None:
        return None
    common: dict[str, Any] = {
        "name": schedule_name(plan),
        "job": job,
        "cron_schedule": sch.cron,
        "execution_timezone": sch.timezone,
        "default_status": dg.DefaultScheduleStatus.RUNNING if sch.enabled else dg.DefaultScheduleStatus.STOPPED,
    }
    described = f"Runs {plan.name} at '{sch.cron}' ({sch.timezone})"
    pdef = build_partitions_def(plan.pipeline.partitions, plan.name)
    if pdef is None:
        return dg.ScheduleDefinition(**common, description=described)

    @dg.schedule(**common, description=f"{described} for the latest partition")
    def _partitioned(context: dg.ScheduleEvaluationContext) -> Any:
        at = context.scheduled_execution_time
        if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
            key = latest_complete_partition(pdef, at)
            if key is None:
                return dg.SkipReason(f"no complete partition of {plan.name} at {at}")
            return dg.RunRequest(run_key=key, partition_key=key)
        if isinstance(pdef, dg.DynamicPartitionsDefinition):
            keys = list(context.instance.get_dynamic_partitions(pdef.name or ""))
        else:
            keys = list(pdef.get_partition_keys())
        if not keys:
            return dg.SkipReason(f"{plan.name} has no partitions yet")
        # Static/dynamic partitions are refreshed on every tick: the tick time keys the runs.
        stamp = at.isoformat() if at is not None else "now"
        return [dg.RunRequest(run_key=f"{key}@{stamp}", partition_key=key) for key in keys]

    return _partitioned
