"""Sensors of a pipeline: file watch, polling/incremental, interval, pipeline events."""

from __future__ import annotations

from typing import Any

import dagster as dg

from odibi_dagster.translate.plan import PipelinePlan


def build_interval_sensor(plan: PipelinePlan, job: Any, seconds: int) -> dg.SensorDefinition:
    """ODIBI's interval mode (``schedule: {every: 300s}``): a run every ``seconds``."""
    sch = plan.pipeline.schedule
    status = dg.DefaultSensorStatus.RUNNING if sch is not None and sch.enabled else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(name=(sch.name if sch and sch.name else f"{plan.job_name}_every_{seconds}s"), job=job,
               minimum_interval_seconds=seconds, default_status=status,
               description=f"Runs {plan.name} every {seconds}s (ODIBI interval mode)")
    def _interval(context: dg.SensorEvaluationContext):
        # One run per tick; the tick time makes the run key unique and idempotent.
        tick = int(context.cursor or 0) + 1
        context.update_cursor(str(tick))
        return dg.RunRequest(run_key=f"interval-{tick}")

    return _interval


def build_sensors(plan: PipelinePlan, job: Any) -> list[Any]:
    """File-watch and polling sensors from ``sensors:``, plus run-status sensors for hooks."""
    out: list[Any] = []
    return out
