"""The example code location's partitioned, scheduled, file-watched pipeline
(``definitions/pipelines/daily_sales.yaml``) loads with all three."""

from __future__ import annotations

import os
import subprocess

import dagster as dg
from odibi_triggers_lib import REPO, VENV_BIN, build

EXAMPLE = REPO / "definitions" / "pipelines" / "daily_sales.yaml"


def test_example_has_partitions_a_schedule_and_a_file_watch_sensor() -> None:
    defs = build(EXAMPLE)
    job = defs.resolve_job_def("daily_sales")
    assert isinstance(job.partitions_def, dg.DailyPartitionsDefinition)
    assert len(job.partitions_def.get_partition_keys()) == 14
    schedule = defs.resolve_schedule_def("daily_sales_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "Europe/Amsterdam")
    sensor = defs.resolve_sensor_def("daily_sales__watch_ingest_daily_sales")
    assert sensor.job_name == "daily_sales"
    assert str(REPO / "definitions" / "data" / "incoming") in (sensor.description or "")
    # every step's asset (the ingest's source files are an observable source asset: no backfills)
    for assets_def in [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]:
        assert assets_def.backfill_policy == dg.BackfillPolicy.single_run()


def test_example_workspace_validates() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ODIBI_BASE_DIR")}
    out = subprocess.run(
        [str(VENV_BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All code locations passed validation" in out.stdout + out.stderr
