"""Runs launched the way the UI launches them, through a real ``dagster dev`` (webserver and
daemon) on a copy of the example code location:

* the ``sales_medallion`` job and "Materialize all" on its group run every step in the run's
  own process (the in-process default), and a successful run's event log holds no hook
  events and no warnings;
* a backfill of all 14 days of ``daily_sales`` (one run, ``backfill: single_run``) gives every
  partition the same metadata as a run of that partition alone, and its story shows every
  partition's rows with the real attempt number.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from support import dagster_dev, example_copy, graphql

pytestmark = [pytest.mark.slow]

LOCATION = "odibi_examples"
REPO_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
DAYS = [f"2024-01-{d:02d}" for d in range(1, 15)]
ALONE = ["2024-01-05", "2024-01-06"]
# Time-dependent entries; everything else must match between a range run and a single run.
VOLATILE = {"odibi/duration_ms", "odibi/rows_per_second", "odibi/story"}

LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
  ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
GROUP = """query($g: AssetGroupSelector!) { assetNodes(group: $g) { assetKey { path } isMaterializable
  assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""


def _launch(base: str, params: dict[str, Any]) -> str:
    result = graphql(base, LAUNCH, {"p": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def _wait_run(base: str, run_id: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(base, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})[
            "runOrError"
        ]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return str(status)
        time.sleep(0.25)
    pytest.fail(f"run {run_id} did not finish")


def _group(base: str, group: str) -> list[dict[str, Any]]:
    """The group's materializable assets, as "Materialize all" selects them (not the ingests'
    source files, which are observed)."""
    nodes = graphql(base, GROUP, {"g": {"groupName": group, **REPO_SELECTOR}})["assetNodes"]
    return [n for n in nodes if n["isMaterializable"]]


def _quiet_in_one_process(instance: dg.DagsterInstance, run_id: str) -> None:
    """Every step ran in one process; no hook events, no warnings in the run's event log."""
    entries = instance.all_logs(run_id)
    starts = [e for e in entries if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"]
    assert len(starts) >= 4  # sales_medallion has 6 steps, daily_sales 4
    assert len({e.dagster_event.pid for e in starts}) == 1, "steps ran in several processes"
    assert not [e for e in entries if e.dagster_event and e.dagster_event.event_type_value.startswith("HOOK_")]
    assert [e.user_message for e in entries if e.level >= logging.WARNING] == []


def _metadata(mat: dg.AssetMaterialization) -> dict[str, Any]:
    return {k: v.value for k, v in mat.metadata.items() if k not in VOLATILE}


def test_ui_launches_run_in_process_and_a_backfill_records_each_partition(tmp_path: Path) -> None:
    workdir = example_copy(tmp_path / "example")
    home = tmp_path / "dagster_home"
    with dagster_dev(workdir, home) as base:
        # 1. The job, as the launchpad launches it, and "Materialize all" on the group.
        job_run = _launch(base, {"selector": {**REPO_SELECTOR, "jobName": "sales_medallion"}, "runConfigData": {}})
        assert _wait_run(base, job_run) == "SUCCESS"
        nodes = _group(base, "sales_medallion")
        checks = [
            {"assetKey": {"path": n["assetKey"]["path"]}, "name": c["name"]}
            for n in nodes
            for c in n["assetChecksOrError"]["checks"]
        ]
        assert len(checks) == 4
        all_run = _launch(
            base,
            {
                "selector": {
                    **REPO_SELECTOR,
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": n["assetKey"]["path"]} for n in nodes],
                    "assetCheckSelection": checks,
                },
                "runConfigData": {},
            },
        )
        assert _wait_run(base, all_run) == "SUCCESS"

        # 2. A backfill of all 14 days (single_run: one run for the range), then two days alone.
        daily = [{"path": n["assetKey"]["path"]} for n in _group(base, "daily_sales")]
        result = graphql(
            base, BACKFILL, {"p": {"partitionNames": DAYS, "assetSelection": daily, "fromFailure": False}}
        )["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        backfill_id = result["backfillId"]
        deadline = time.monotonic() + 240
        status = "REQUESTED"
        while time.monotonic() < deadline:
            backfill = graphql(
                base,
                """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status runs { runId status } } } }""",
                {"id": backfill_id},
            )
            status = backfill["partitionBackfillOrError"]["status"]
            if status not in ("REQUESTED", "CANCELING", "FAILING"):
                break
            time.sleep(1)
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
        (range_run,) = backfill["partitionBackfillOrError"]["runs"]
        assert range_run["status"] == "SUCCESS"
        alone = {}
        for day in ALONE:
            run_id = _launch(
                base,
                {
                    "selector": {**REPO_SELECTOR, "jobName": "daily_sales"},
                    "runConfigData": {},
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
                },
            )
            assert _wait_run(base, run_id) == "SUCCESS"
            alone[day] = run_id

    with dg.DagsterInstance.from_config(str(home)) as instance:
        _quiet_in_one_process(instance, job_run)
        _quiet_in_one_process(instance, all_run)
        _quiet_in_one_process(instance, range_run["runId"])
        # Every partition of every daily_sales asset: the range run's metadata equals the single run's.
        compared = 0
        for node in daily:
            key = dg.AssetKey(node["path"])
            records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=100).records
            by_run: dict[tuple[str, str | None], dg.AssetMaterialization] = {
                (r.run_id, r.asset_materialization.partition): r.asset_materialization for r in records
            }
            assert {p for (run, p) in by_run if run == range_run["runId"]} == set(DAYS), key
            for day, run_id in alone.items():
                ranged, single = _metadata(by_run[(range_run["runId"], day)]), _metadata(by_run[(run_id, day)])
                assert ranged == single, (key, day)
                assert {"dagster/row_count", "dagster/partition_row_count", "dagster/uri"} <= set(ranged)
                compared += 1
            rows = {p: by_run[(range_run["runId"], p)].metadata["dagster/row_count"].value for p in DAYS}
            uris = {by_run[(range_run["runId"], p)].metadata["dagster/uri"].value for p in DAYS}
            assert len(uris) == 14, "each partition has its own uri"
            assert sum(rows.values()) > max(rows.values()), "row counts are per partition, not the range's"
        assert compared == 2 * len(daily)

    # The range run's story: every partition of every step, first attempts only.
    run_dir = workdir / "definitions" / "pipelines" / ".odibi" / "stories" / "daily_sales" / range_run["runId"]
    lineage = json.loads((run_dir / "tracker.json").read_text())
    per_step: dict[str, set[str]] = {}
    for record in lineage["steps"]:
        assert record["status"] == "success" and record["attempt"] == 1, record["step_name"]
        per_step.setdefault(record["step_name"], set()).add(record["partition_key"])
    assert per_step == {
        s: set(DAYS) for s in ("ingest_daily_sales", "summarise_day", "trailing_week", "save_daily_revenue")
    }
    story = (run_dir / "story.html").read_text()
    assert all(f"partition {day}" in story for day in DAYS)
