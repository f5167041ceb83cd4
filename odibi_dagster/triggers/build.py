"""Schedules, sensors and pipeline-level checks of one pipeline."""

from __future__ import annotations

from typing import Any

import dagster as dg

from odibi_dagster.translate.plan import PipelinePlan
from odibi_dagster.triggers.partitions import is_time_partitioned
from odibi_dagster.triggers.schedules import interval_seconds


def build_schedule(plan: PipelinePlan, job: Any) -> Any | None:
    """``schedule: {cron, timezone}`` -> a Dagster schedule on the pipeline's job.

    Time-partitioned pipelines get a schedule that targets the latest complete
    partition; ``every:`` (ODIBI's interval mode) becomes a sensor (see sensors).
    """
    sch = plan.pipeline.schedule
    if sch is None or sch.cron is None:
        return None
    name = sch.name or f"{plan.job_name}_schedule"
    status = dg.DefaultScheduleStatus.RUNNING if sch.enabled else dg.DefaultScheduleStatus.STOPPED
    if is_time_partitioned(plan.pipeline.partitions):
        return dg.build_schedule_from_partitioned_job(
            job, name=name, cron_schedule=sch.cron, default_status=status,
        )
    return dg.ScheduleDefinition(name=name, job=job, cron_schedule=sch.cron, execution_timezone=sch.timezone,
                                 default_status=status)


def build_triggers(plan: PipelinePlan, job: Any, assets: list[dg.AssetsDefinition]
                   ) -> tuple[list[Any], list[Any], list[Any]]:
    """(schedules, sensors, extra asset checks) of a pipeline."""
    from odibi_dagster.triggers.sensors import build_sensors

    schedules = [s for s in [build_schedule(plan, job)] if s is not None]
    sensors = build_sensors(plan, job)
    if plan.pipeline.schedule is not None and plan.pipeline.schedule.every is not None:
        from odibi_dagster.triggers.sensors import build_interval_sensor

        sensors.append(build_interval_sensor(plan, job, interval_seconds(plan.pipeline.schedule.every)))
    checks: list[Any] = []
    if plan.pipeline.column_schema_change_checks:
        checks += list(dg.build_column_schema_change_checks(assets=assets))
    return schedules, sensors, checks
