"""What every odibi sensor shares: run tags, the cursor version, the sensor decorator, run config
for one step and the "is a run of this sensor still going" test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from odibi_dagster.config.models import FileWatchSensorConfig, PollingSensorConfig, Step
from odibi_dagster.plan import PipelinePlan

#: Run tags of sensor runs (tags, not metadata): which sensor, and what it found.
SENSOR_TAG = "odibi/sensor"
FILE_TAG = "odibi/file"
FILE_SIZE_TAG = "odibi/file_size"
FILE_MTIME_TAG = "odibi/file_mtime"
WATERMARK_COLUMN_TAG = "odibi/watermark_column"
WATERMARK_START_TAG = "odibi/watermark_start"
WATERMARK_END_TAG = "odibi/watermark_end"
NEW_ROWS_TAG = "odibi/new_rows"

CURSOR_VERSION = 1

#: Statuses of a run that has not finished yet.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def odibi_sensor(
    name: str, job: Any, *, interval_seconds: int, enabled: bool, description: str
) -> Callable[[Callable[..., Any]], dg.SensorDefinition]:
    """``dg.sensor`` for a pipeline's job, running (or stopped) by default as the config says."""
    return dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED,
        description=description,
    )


def configured_sensor(
    cfg: FileWatchSensorConfig | PollingSensorConfig, name: str, job: Any, description: str
) -> Callable[[Callable[..., Any]], dg.SensorDefinition]:
    """:func:`odibi_sensor` with the interval and default status of a ``sensors:`` entry."""
    return odibi_sensor(
        name, job, interval_seconds=cfg.min_interval_seconds, enabled=cfg.enabled, description=description
    )


def step_run_config(plan: PipelinePlan, step: Step, **values: Any) -> dict[str, Any]:
    """Run config handing ``values`` to ``step`` (its ``StepRunConfig``)."""
    return {"ops": {plan.op_name(step): {"config": values}}}


def run_in_flight(instance: dg.DagsterInstance, sensor_name: str) -> str | None:
    """The id of a run this sensor started that has not finished yet, if any."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={SENSOR_TAG: sensor_name}, statuses=IN_FLIGHT), limit=1
    )
    return records[0].dagster_run.run_id if records else None
