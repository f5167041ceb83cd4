"""Schedules, sensors and pipeline-level checks of one pipeline."""

from __future__ import annotations

from typing import Any

import dagster as dg

from odibi_dagster.plan import PipelinePlan
from odibi_dagster.triggers.schedules import build_schedule
from odibi_dagster.triggers.sensors import build_sensors

__all__ = ["build_schedule", "build_triggers"]


def build_triggers(
    plan: PipelinePlan, job: Any, assets: list[dg.AssetsDefinition]
) -> tuple[list[Any], list[Any], list[Any]]:
    """(schedules, sensors, extra asset checks) of a pipeline.

    Schedules from ``schedule: {cron}``; sensors from ``sensors:`` (file watch, polling),
    ``schedule: {every}`` (interval mode) and ``hooks:`` (pipeline events).
    """
    schedule = build_schedule(plan, job)
    schedules = [schedule] if schedule is not None else []
    sensors = build_sensors(plan, job)
    checks: list[Any] = []
    if plan.pipeline.column_schema_change_checks:
        checks += list(dg.build_column_schema_change_checks(assets=assets))
    return schedules, sensors, checks
