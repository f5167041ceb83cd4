"""``odibi-dagster run`` on the partitioned example: a 14-day range run records each
partition's own metadata (equal to a run of that partition alone), and a run without
``--partition`` fails at once, before any run exists, saying how to pass one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import dagster as dg
from support import example_copy
from triggers_support import VENV_BIN

VOLATILE = {"odibi/duration_ms", "odibi/rows_per_second", "odibi/story"}


def _cli(workdir: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ODIBI_BASE_DIR"} | {"DAGSTER_HOME": str(home)}
    return subprocess.run(
        [str(VENV_BIN / "odibi-dagster"), "run", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[tuple[str, str | None], Any]:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=200).records
    return {(r.run_id, r.asset_materialization.partition): r.asset_materialization for r in records}


def test_a_range_run_records_every_partition_as_a_single_run_would(tmp_path: Path) -> None:
    workdir = example_copy(tmp_path / "example")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = str(workdir / "definitions" / "pipelines" / "daily_sales.yaml")
    ranged = _cli(workdir, home, config, "--partition", "2024-01-01...2024-01-14")
    assert ranged.returncode == 0, ranged.stdout + ranged.stderr
    # The progress line adds up the range: 14 days of 50 sales.
    assert "700 rows" in ranged.stdout, ranged.stdout
    for day in ("2024-01-03", "2024-01-09"):
        alone = _cli(workdir, home, config, "--partition", day)
        assert alone.returncode == 0, alone.stdout + alone.stderr

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()  # newest first: the two single runs, then the range run
        range_run, singles = runs[-1], {r.tags["dagster/partition"]: r.run_id for r in runs[:-1]}
        assert "dagster/asset_partition_range_start" in range_run.tags
        keys = [
            dg.AssetKey(["daily_sales", name])
            for name in ("bronze_daily_sales", "daily_store_revenue", "trailing_week_revenue", "save_daily_revenue")
        ]
        for key in keys:
            mats = _materializations(instance, key)
            for day, run_id in singles.items():
                ranged_md = {k: v.value for k, v in mats[(range_run.run_id, day)].metadata.items() if k not in VOLATILE}
                single_md = {k: v.value for k, v in mats[(run_id, day)].metadata.items() if k not in VOLATILE}
                assert ranged_md == single_md, (key, day)
                assert ranged_md["dagster/partition_row_count"] == ranged_md["dagster/row_count"]
                assert day in str(ranged_md["dagster/uri"])

    lineage = json.loads(
        (
            workdir
            / "definitions"
            / "pipelines"
            / ".odibi"
            / "stories"
            / "daily_sales"
            / range_run.run_id
            / "tracker.json"
        ).read_text()
    )
    ingest = [s for s in lineage["steps"] if s["step_name"] == "ingest_daily_sales"]
    assert sorted(s["partition_key"] for s in ingest) == [f"2024-01-{d:02d}" for d in range(1, 15)]
    assert {s["attempt"] for s in lineage["steps"]} == {1}
    assert lineage["summary"]["rows_in"] == 700


def test_a_partitioned_pipeline_without_a_partition_fails_before_any_run(tmp_path: Path) -> None:
    workdir = example_copy(tmp_path / "example")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = _cli(workdir, home, str(workdir / "definitions" / "pipelines" / "daily_sales.yaml"))
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert message == (
        "error: pipeline 'daily_sales' is partitioned (daily partitions from 2024-01-01 to "
        "2024-01-15 (UTC)); choose what to run with --partition 2024-01-14 for one, or "
        "--partition 2024-01-08...2024-01-14 for a range"
    ), message
    assert "Traceback" not in proc.stdout + proc.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []
