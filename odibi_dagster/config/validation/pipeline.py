"""Pipeline settings: engine, partitions, schedule, sensors, hooks, explanations, retry,
owners and tags, and the names of schedules and sensors."""

from __future__ import annotations

import datetime as dt

from odibi_dagster.config.imports import FunctionImportError, resolve_callable
from odibi_dagster.config.models import (
    VALID_ENGINES,
    VALID_EVENTS,
    FileWatchSensorConfig,
    PartitionsConfig,
    PipelineConfig,
    PollingSensorConfig,
    ScheduleConfig,
    SensorConfig,
    Step,
)
from odibi_dagster.config.names import dagster_name
from odibi_dagster.config.validation.automation import check_freshness
from odibi_dagster.config.validation.collector import Collector, case_hint
from odibi_dagster.config.validation.policies import check_owners, check_retry, check_tags, valid_timezone

# Filesystems a file-watch sensor can list (through fsspec): local folders and blob stores.
WATCHABLE_PROTOCOLS = frozenset({"file", "abfs", "abfss", "az", "s3", "gs", "gcs", "memory"})


def _check_partitions(partitions: PartitionsConfig, pipeline_name: str, col: Collector) -> None:
    from odibi_dagster.config.partitions import build_partitions_def

    if not valid_timezone(partitions.timezone):
        col.add(None, "partitions.timezone", f"unknown timezone '{partitions.timezone}'")
        return
    dates_ok = True
    for key in ("start", "end"):
        value = getattr(partitions, key)
        if value is not None and partitions.type not in ("static", "dynamic"):
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                dates_ok = False
                col.add(None, f"partitions.{key}", f"'{value}' is not a date (YYYY-MM-DD or ISO datetime)")
    if dates_ok:
        try:
            build_partitions_def(partitions, pipeline_name)
        except Exception as exc:
            col.add(None, "partitions", f"bad partition settings: {exc}")


def _check_schedule(sch: ScheduleConfig, col: Collector) -> None:
    from odibi_dagster.config.schedules import interval_seconds, is_valid_cron

    if sch.cron is not None and not is_valid_cron(sch.cron):
        col.add(None, "schedule.cron", f"'{sch.cron}' is not a valid cron expression")
    if sch.every is not None:
        try:
            interval_seconds(sch.every)
        except (ValueError, TypeError) as exc:
            col.add(None, "schedule.every", str(exc))
    if not valid_timezone(sch.timezone):
        col.add(None, "schedule.timezone", f"unknown timezone '{sch.timezone}'")


def _check_file_watch(i: int, sensor: FileWatchSensorConfig, pipeline: PipelineConfig, col: Collector) -> None:
    if sensor.dynamic_partitions and (pipeline.partitions is None or pipeline.partitions.type != "dynamic"):
        col.add(
            None, f"sensors[{i}].dynamic_partitions", "dynamic_partitions needs pipeline 'partitions: {type: dynamic}'"
        )
    if "://" in sensor.path and sensor.path.split("://", 1)[0].lower() not in WATCHABLE_PROTOCOLS:
        col.add(
            None,
            f"sensors[{i}].path",
            f"'{sensor.path}': file-watch sensors watch a local folder or a blob-store prefix "
            f"({', '.join(p + '://' for p in sorted(WATCHABLE_PROTOCOLS))})",
        )


def _check_polling(
    i: int, sensor: PollingSensorConfig, pipeline: PipelineConfig, by_name: dict[str, Step], col: Collector
) -> None:
    if "://" not in sensor.source and sensor.source not in by_name:
        col.add(None, f"sensors[{i}].source", f"'{sensor.source}' is neither a URL nor a connect step")
    if pipeline.partitions is not None and pipeline.partitions.type in ("static", "dynamic"):
        col.add(
            None,
            f"sensors[{i}].type",
            f"a {sensor.type} sensor needs an unpartitioned or "
            f"time-partitioned pipeline (partitions are {pipeline.partitions.type})",
        )


def _check_sensor(
    i: int, sensor: SensorConfig, pipeline: PipelineConfig, by_name: dict[str, Step], col: Collector
) -> None:
    where = f"sensors[{i}].step"
    target = by_name.get(sensor.step)
    if target is None:
        col.add(None, where, f"sensor names unknown step '{sensor.step}'")
    elif target.layer != "ingest":
        col.add(None, where, f"sensor step '{sensor.step}' must be an ingest step, not {target.layer}")
    if isinstance(sensor, FileWatchSensorConfig):
        _check_file_watch(i, sensor, pipeline, col)
    else:
        _check_polling(i, sensor, pipeline, by_name, col)


def _check_hooks(pipeline: PipelineConfig, by_name: dict[str, Step], col: Collector) -> None:
    for i, hook in enumerate(pipeline.hooks):
        if hook.event not in VALID_EVENTS:
            hint = ""
            if hook.event.lower().replace("step_", "node_") in VALID_EVENTS:
                hint = f"; did you mean '{hook.event.lower().replace('step_', 'node_')}'?"
            col.add(None, f"hooks[{i}].event", f"unknown event '{hook.event}' (valid: {', '.join(VALID_EVENTS)}){hint}")
        try:
            resolve_callable(hook.function, pipeline.module_dirs)
        except FunctionImportError as exc:
            col.add(None, f"hooks[{i}].function", str(exc))
        for name in hook.steps or []:
            if name not in by_name:
                col.add(None, f"hooks[{i}].steps", f"hook names unknown step '{name}'")


def _check_trigger_names(pipeline: PipelineConfig, col: Collector) -> None:
    """Schedules and sensors share one namespace in Dagster: their explicit names must differ."""
    named: dict[str, str] = {}
    triggers = [("schedule.name", pipeline.schedule)] if pipeline.schedule is not None else []
    triggers += [(f"sensors[{i}].name", sensor) for i, sensor in enumerate(pipeline.sensors)]
    for where, trigger in triggers:
        if trigger.name:
            first = named.setdefault(dagster_name(trigger.name), where)
            if first != where:
                other = first.removesuffix(".name")
                col.add(
                    None,
                    where,
                    f"name '{trigger.name}' is also the name of {other} (schedules and sensors need distinct names)",
                )


def check_pipeline(pipeline: PipelineConfig, steps: list[Step], col: Collector) -> None:
    """The pipeline-wide settings, and the steps they name."""
    if pipeline.engine not in VALID_ENGINES:
        col.add(
            None,
            "engine",
            f"invalid engine: '{pipeline.engine}' (valid: {', '.join(VALID_ENGINES)})"
            + case_hint(pipeline.engine, VALID_ENGINES, "engine"),
        )
    if pipeline.partitions is not None:
        _check_partitions(pipeline.partitions, pipeline.name, col)
    if pipeline.schedule is not None:
        _check_schedule(pipeline.schedule, col)
    if pipeline.observe_sources is not None:
        from odibi_dagster.config.schedules import is_valid_cron

        if not is_valid_cron(pipeline.observe_sources):
            col.add(None, "observe_sources", f"'{pipeline.observe_sources}' is not a valid cron expression")
    by_name = {s.name: s for s in steps}
    for i, sensor in enumerate(pipeline.sensors):
        _check_sensor(i, sensor, pipeline, by_name, col)
    check_retry(pipeline.retry, None, "retry", col)
    if pipeline.freshness is not None:
        check_freshness(pipeline.freshness, None, "freshness", col)
    _check_hooks(pipeline, by_name, col)
    for name in pipeline.explanations:
        if name not in by_name:
            col.add(None, f"explanations.{name}", f"explanation for unknown step '{name}'")
    check_owners(pipeline.owners, None, "owners", col)
    check_tags(pipeline.tags, None, "tags", col)
    _check_trigger_names(pipeline, col)
