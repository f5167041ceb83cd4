"""ODIBI's interval mode (``schedule: {every: 300s}``) as a sensor."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from odibi_dagster.config.names import dagster_name
from odibi_dagster.config.partitions import build_partitions_def, latest_complete_partition
from odibi_dagster.plan import PipelinePlan
from odibi_dagster.triggers.sensors.common import odibi_sensor


def build_interval_sensor(plan: PipelinePlan, job: Any, seconds: int) -> dg.SensorDefinition:
    """ODIBI's interval mode (``schedule: {every: 300s}``): a run every ``seconds``.

    Dagster evaluates the sensor no more often than ``seconds`` (its minimum interval); each
    evaluation requests one run, keyed by a counter kept in the cursor. Time-partitioned
    pipelines run their latest complete partition, static ones every value, dynamic ones
    every known key.
    """
    sch = plan.pipeline.schedule
    pdef = build_partitions_def(plan.pipeline.partitions, plan.name)
    name = dagster_name(sch.name) if sch is not None and sch.name else f"{plan.job_name}_every_{seconds}s"

    @odibi_sensor(
        name,
        job,
        interval_seconds=seconds,
        enabled=sch is not None and sch.enabled,
        description=f"Runs {plan.name} every {seconds}s (ODIBI interval mode)",
    )
    def _interval(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        tick = int(context.cursor or 0) + 1
        cursor = str(tick)
        # The counter orders the runs; the time keeps keys unique if the cursor is ever reset.
        base = f"interval-{tick}@{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        if pdef is None:
            return dg.SensorResult([dg.RunRequest(run_key=base)], cursor=cursor)
        if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
            key = latest_complete_partition(pdef, None)
            keys = [key] if key is not None else []
        elif isinstance(pdef, dg.DynamicPartitionsDefinition):
            keys = list(context.instance.get_dynamic_partitions(pdef.name or ""))
        else:
            keys = list(pdef.get_partition_keys())
        if not keys:
            return dg.SensorResult(skip_reason=f"{plan.name} has no partitions yet", cursor=cursor)
        return dg.SensorResult([dg.RunRequest(run_key=f"{base}-{k}", partition_key=k) for k in keys], cursor=cursor)

    return _interval
