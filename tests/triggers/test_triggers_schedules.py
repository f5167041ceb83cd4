"""Schedules from ``schedule: {cron, timezone}`` evaluated at chosen times, and ODIBI's interval
mode (``every:``) as a sensor."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster._utils.schedules import cron_string_iterator
from triggers_support import (
    build,
    daily_pipeline,
    days,
    evaluate_sensor,
    launch,
    write_daily_data,
    write_yaml,
)

from odibi_dagster.config.errors import ConfigValidationError

UTC = dt.UTC
AMS = zoneinfo.ZoneInfo("Europe/Amsterdam")


def tick(defs: dg.Definitions, name: str, at: dt.datetime, instance: dg.DagsterInstance) -> Any:
    schedule = defs.resolve_schedule_def(name)
    ref = instance.get_ref() if instance.is_persistent else None
    context = dg.build_schedule_context(
        instance=instance,
        instance_ref=ref,
        scheduled_execution_time=at,
        repository_def=defs.get_repository_def(),
    )
    return schedule.evaluate_tick(context)


def simple(project: Path, **extra: Any) -> Path:
    return write_yaml(
        project / "simple.yaml",
        {
            "pipeline": "simple",
            **extra,
            "steps": [{"layer": "ingest", "name": "ingest", "value": "data/x.csv", "outputs": {"data": "raw"}}],
        },
    )


def test_cron_schedule_on_an_unpartitioned_pipeline(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(simple(project, schedule={"cron": "30 6 * * 1-5", "timezone": "Europe/Amsterdam"}))
    schedule = defs.resolve_schedule_def("simple_schedule")
    assert schedule.cron_schedule == "30 6 * * 1-5"
    assert schedule.execution_timezone == "Europe/Amsterdam"
    assert schedule.job_name == "simple"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # The cron is read in Amsterdam time: 06:30 CET is 05:30 UTC in winter, 04:30 UTC in summer.
    winter = next(
        cron_string_iterator(
            dt.datetime(2024, 1, 8, tzinfo=UTC).timestamp(),
            schedule.cron_schedule,
            schedule.execution_timezone,
        )
    )
    summer = next(
        cron_string_iterator(
            dt.datetime(2024, 7, 8, tzinfo=UTC).timestamp(),
            schedule.cron_schedule,
            schedule.execution_timezone,
        )
    )
    assert winter.astimezone(UTC).hour == 5 and summer.astimezone(UTC).hour == 4
    data = tick(defs, "simple_schedule", dt.datetime(2024, 1, 8, 6, 30, tzinfo=AMS), instance)
    (request,) = data.run_requests
    assert request.partition_key is None


def test_disabled_and_named_schedules(project: Path) -> None:
    defs = build(simple(project, schedule={"cron": "@daily", "name": "nightly run", "enabled": False}))
    schedule = defs.resolve_schedule_def("nightly_run")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_bad_cron_and_timezone_fail_validation(project: Path) -> None:
    with pytest.raises(ConfigValidationError) as err:
        build(simple(project, schedule={"cron": "61 * * * *", "timezone": "Mars/Olympus"}))
    text = str(err.value)
    assert "not a valid cron" in text and "unknown timezone" in text


def test_time_partitioned_schedule_runs_the_latest_complete_partition(
    project: Path, instance: dg.DagsterInstance
) -> None:
    path = daily_pipeline(project, schedule={"cron": "0 2 * * *", "timezone": "Europe/Amsterdam"})
    defs = build(path)
    name = "daily_schedule"
    assert defs.resolve_schedule_def(name).execution_timezone == "Europe/Amsterdam"
    # 02:00 in Amsterdam on Jan 5 is 01:00 UTC: the latest complete (UTC) day is Jan 4.
    data = tick(defs, name, dt.datetime(2024, 1, 5, 2, 0, tzinfo=AMS), instance)
    (request,) = data.run_requests
    assert (request.partition_key, request.run_key) == ("2024-01-04", "2024-01-04")
    # 00:30 in Amsterdam on Jan 5 is still Jan 4 in UTC: Jan 3 is the latest complete day.
    data = tick(defs, name, dt.datetime(2024, 1, 5, 0, 30, tzinfo=AMS), instance)
    assert [r.partition_key for r in data.run_requests] == ["2024-01-03"]
    # Before the first day is over there is nothing to run; after the end, the last day.
    early = tick(defs, name, dt.datetime(2024, 1, 1, 12, 0, tzinfo=UTC), instance)
    assert early.run_requests == [] and "no complete partition" in early.skip_message
    late = tick(defs, name, dt.datetime(2025, 6, 1, 2, 0, tzinfo=AMS), instance)
    assert [r.partition_key for r in late.run_requests] == ["2024-01-10"]

    # The requested run materializes that partition.
    write_daily_data(project, days("2024-01-01", 4))
    result = launch(defs, "daily", instance, data.run_requests[0])
    assert result.success
    assert pd.read_csv(project / "out" / "2024-01-03.csv")["pk"].tolist() == ["2024-01-03"]


def test_partitions_timezone_decides_which_day_is_complete(project: Path, instance: dg.DagsterInstance) -> None:
    path = daily_pipeline(project, schedule={"cron": "0 * * * *", "timezone": "UTC"})
    text = path.read_text().replace("end: '2024-01-11'", "end: '2024-01-11'\n  timezone: America/New_York")
    path.write_text(text)
    defs = build(path)
    # 03:00 UTC on Jan 5 is 22:00 on Jan 4 in New York: Jan 3 is the latest complete New York day.
    data = tick(defs, "daily_schedule", dt.datetime(2024, 1, 5, 3, 0, tzinfo=UTC), instance)
    assert [r.partition_key for r in data.run_requests] == ["2024-01-03"]
    data = tick(defs, "daily_schedule", dt.datetime(2024, 1, 5, 5, 0, tzinfo=UTC), instance)
    assert [r.partition_key for r in data.run_requests] == ["2024-01-04"]


def test_hourly_schedule(project: Path, instance: dg.DagsterInstance) -> None:
    path = write_yaml(
        project / "h.yaml",
        {
            "pipeline": "h",
            "partitions": {"type": "hourly", "start": "2024-01-01"},
            "schedule": {"cron": "15 * * * *"},
            "steps": [{"layer": "ingest", "name": "ingest", "value": "x.csv", "outputs": {"data": "raw"}}],
        },
    )
    defs = build(path)
    data = tick(defs, "h_schedule", dt.datetime(2024, 3, 1, 10, 15, tzinfo=UTC), instance)
    assert [r.partition_key for r in data.run_requests] == ["2024-03-01-09:00"]


def test_static_and_dynamic_partitions_run_every_key_on_each_tick(
    project: Path, persistent_instance: dg.DagsterInstance
) -> None:
    static = write_yaml(
        project / "s.yaml",
        {
            "pipeline": "s",
            "partitions": {"type": "static", "values": ["north", "south"]},
            "schedule": {"cron": "0 3 * * *"},
            "steps": [
                {
                    "layer": "ingest",
                    "name": "ingest",
                    "value": "{{ partition_key }}.csv",
                    "outputs": {"data": "raw"},
                }
            ],
        },
    )
    dynamic = write_yaml(
        project / "d.yaml",
        {
            "pipeline": "d",
            "partitions": {"type": "dynamic", "name": "d_keys"},
            "schedule": {"cron": "0 3 * * *"},
            "steps": [
                {
                    "layer": "ingest",
                    "name": "ingest",
                    "value": "{{ partition_key }}.csv",
                    "outputs": {"data": "raw2"},
                }
            ],
        },
    )
    defs = build(static, dynamic)
    at = dt.datetime(2024, 1, 2, 3, 0, tzinfo=UTC)
    data = tick(defs, "s_schedule", at, persistent_instance)
    assert [(r.partition_key, r.run_key) for r in data.run_requests] == [
        ("north", f"north@{at.isoformat()}"),
        ("south", f"south@{at.isoformat()}"),
    ]
    empty = tick(defs, "d_schedule", at, persistent_instance)
    assert empty.run_requests == [] and "no partitions yet" in empty.skip_message
    persistent_instance.add_dynamic_partitions("d_keys", ["a", "b"])
    assert sorted(r.partition_key for r in tick(defs, "d_schedule", at, persistent_instance).run_requests) == ["a", "b"]


def test_interval_mode_is_a_sensor_with_that_minimum_interval(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(simple(project, schedule={"every": "5m"}))
    assert list(defs.schedules or []) == []
    sensor = defs.resolve_sensor_def("simple_every_300s")
    assert sensor.minimum_interval_seconds == 300
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    first = evaluate_sensor(defs, "simple_every_300s", instance)
    second = evaluate_sensor(defs, "simple_every_300s", instance, first.cursor)
    keys = [r.run_key for r in first.run_requests + second.run_requests]
    assert [k.split("@")[0] for k in keys] == ["interval-1", "interval-2"]


def test_interval_mode_on_a_daily_pipeline_runs_the_latest_partition(
    project: Path, instance: dg.DagsterInstance
) -> None:
    defs = build(daily_pipeline(project, schedule={"every": 3600}))
    (request,) = evaluate_sensor(defs, "daily_every_3600s", instance).run_requests
    assert request.partition_key == "2024-01-10"


@pytest.mark.parametrize("every", ["10s", "soon", 5])
def test_interval_mode_rejects_short_or_bad_intervals(project: Path, every: Any) -> None:
    with pytest.raises(ConfigValidationError, match=r"schedule\.every"):
        build(simple(project, schedule={"every": every}))


def test_pipelines_without_schedule_have_none(project: Path) -> None:
    defs = build(simple(project))
    assert list(defs.schedules or []) == [] and list(defs.sensors or []) == []
