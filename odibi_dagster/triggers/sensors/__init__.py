"""Sensors of a pipeline: file watch, polling/incremental, interval, pipeline events.

ODIBI's ScheduleManager file watch and StreamManager FILE_WATCH / INTERVAL /
INCREMENTAL modes become Dagster sensors. The state ODIBI kept in its checkpoint
directory (files seen, the watermark) lives in the sensor's cursor, which Dagster
stores with every tick; run keys make a request idempotent on top of that.

How the data reaches the step:

* file watch (``file_watch``, scanning in ``files``): the file's absolute path goes to the
  named ingest step as its run config ``{"ops": {<op>: {"config": {"source": path}}}}``
  (``StepRunConfig.source``), so no template or quoting is involved; with dynamic partitions
  the partition key is the file's path relative to the watched directory, and a run of that
  partition without run config reads that file (``dynamic_file_source``).
* polling (``polling``): the new range ``(watermark_start, watermark_end]`` goes to the ingest
  step as ``StepRunConfig.watermark_start / watermark_end`` and to the run's tags; a SQL ingest
  step reads only the new rows with ``{{ watermark_start }}`` / ``{{ watermark_end }}``
  (rendered as SQL literals).
* interval (``interval``): ``schedule: {every: ...}``, a run per interval.

``common`` holds what they share (run tags, the sensor decorator, the in-flight test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from odibi_dagster.config.models import FileWatchSensorConfig, PollingSensorConfig
from odibi_dagster.config.names import dagster_name
from odibi_dagster.plan import PipelinePlan
from odibi_dagster.triggers.sensors.common import (
    FILE_MTIME_TAG,
    FILE_SIZE_TAG,
    FILE_TAG,
    NEW_ROWS_TAG,
    SENSOR_TAG,
    WATERMARK_COLUMN_TAG,
    WATERMARK_END_TAG,
    WATERMARK_START_TAG,
)
from odibi_dagster.triggers.sensors.file_watch import (
    FileWatchCursor,
    build_file_watch_sensor,
    dynamic_file_source,
    file_watch_root,
)
from odibi_dagster.triggers.sensors.files import WatchedFile, scan_files
from odibi_dagster.triggers.sensors.interval import build_interval_sensor
from odibi_dagster.triggers.sensors.polling import build_polling_sensor, poll_watermark, polling_source_url

__all__ = [
    "FILE_MTIME_TAG",
    "FILE_SIZE_TAG",
    "FILE_TAG",
    "NEW_ROWS_TAG",
    "SENSOR_TAG",
    "WATERMARK_COLUMN_TAG",
    "WATERMARK_END_TAG",
    "WATERMARK_START_TAG",
    "FileWatchCursor",
    "WatchedFile",
    "build_file_watch_sensor",
    "build_interval_sensor",
    "build_polling_sensor",
    "build_sensors",
    "dynamic_file_source",
    "file_watch_root",
    "poll_watermark",
    "polling_source_url",
    "scan_files",
    "sensor_names",
]


def sensor_names(plan: PipelinePlan) -> Iterator[tuple[FileWatchSensorConfig | PollingSensorConfig, str]]:
    """Each configured sensor with its Dagster name (``name`` or ``<pipeline>__<kind>_<step>``)."""
    used: set[str] = set()
    for cfg in plan.pipeline.sensors:
        kind = "watch" if isinstance(cfg, FileWatchSensorConfig) else "poll"
        default = f"{plan.job_name}__{kind}_{dagster_name(cfg.step)}"
        base = dagster_name(cfg.name) if cfg.name else default
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        yield cfg, name


def build_sensors(plan: PipelinePlan, job: Any) -> list[Any]:
    """File-watch and polling sensors from ``sensors:``, the interval sensor of
    ``schedule: {every: ...}``, and run-status sensors for pipeline hooks."""
    from odibi_dagster.config.schedules import interval_seconds
    from odibi_dagster.triggers.hooks import build_hook_sensors

    out: list[Any] = []
    for cfg, name in sensor_names(plan):
        if isinstance(cfg, FileWatchSensorConfig):
            out.append(build_file_watch_sensor(plan, job, cfg, name))
        else:
            out.append(build_polling_sensor(plan, job, cfg, name))
    sch = plan.pipeline.schedule
    if sch is not None and sch.every is not None:
        out.append(build_interval_sensor(plan, job, interval_seconds(sch.every)))
    out += build_hook_sensors(plan, job)
    return out
