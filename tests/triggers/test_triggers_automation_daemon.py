"""Automation and guarantees from config, through a real deployment: ``dagster-webserver`` and
``dagster-daemon`` (its freshness daemon, the default automation condition sensor, backfills and the
run queue) in their own process group on a temp DAGSTER_HOME, driven over GraphQL as the UI does.

- the asset nodes show the config's freshness policy, concurrency pool and automation condition;
- an eager step is not run by the automation sensor while its input's blocking check fails, and is
  once the check passes;
- a range backfill of a partitioned pipeline gives one check result per partition;
- an asset's freshness turns from healthy to failed once its window has passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from odibi_triggers_lib import (
    LAUNCH_BACKFILL,
    DagsterProcess,
    graphql,
    start_daemon,
    start_webserver,
    wait_for,
    write_csv,
    write_deployment,
    write_yaml,
)
from support import free_port

pytestmark = pytest.mark.slow

LOCATION = "odibi_auto"
REPO = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
SENSOR = {**REPO, "sensorName": "default_automation_condition_sensor"}
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]

LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status endTime } } }"
ASSET_NODE = """query($k: [AssetKeyInput!]) { assetNodes(assetKeys: $k) { assetKey { path } pools
  automationCondition { label expandedLabel }
  internalFreshnessPolicy { __typename
    ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds }
    ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone } }
  freshnessStatusInfo { freshnessStatus }
  assetChecksOrError { ... on AssetChecks { checks { name blocking partitionDefinition { type } } } } } }"""
START_SENSOR = """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
  ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
SENSOR_TICKS = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
  sensorState { ticks(limit: 100) { status timestamp endTimestamp runIds requestedAssetKeys { path } } } } } }"""
CHECK_EXECUTIONS = """query($k: AssetKeyInput!, $c: String!, $p: String) {
  assetCheckExecutions(assetKey: $k, checkName: $c, limit: 20, partition: $p) {
    partition status runId evaluation { success } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status runs { runId status } } } }"""


@dataclass
class Deployment:
    root: Path
    port: int
    web: DagsterProcess
    daemon: DagsterProcess

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.port, query, variables or {})

    def logs(self) -> str:
        return f"--- webserver\n{self.web.tail(30)}\n--- daemon\n{self.daemon.tail(60)}"

    def node(self, *path: str) -> dict[str, Any]:
        (node,) = self.query(ASSET_NODE, {"k": [{"path": list(path)}]})["assetNodes"]
        return node

    def launch(self, job: str, key: list[str], checks: list[str]) -> str:
        selector = {
            **REPO,
            "jobName": job,
            "assetSelection": [{"path": key}],
            "assetCheckSelection": [{"assetKey": {"path": key}, "name": c} for c in checks],
        }
        result = self.query(LAUNCH, {"p": {"selector": selector, "runConfigData": {}}})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def finished(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run = self.query(RUN_STATUS, {"id": run_id})["runOrError"]
            return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        try:
            return wait_for(done, timeout, 0.5, f"run {run_id}")
        except TimeoutError:
            pytest.fail(self.logs())

    def ticks(self) -> list[dict[str, Any]]:
        return self.query(SENSOR_TICKS, {"s": SENSOR})["sensorOrError"]["sensorState"]["ticks"]


def _write_sales(pipelines: Path, rows: int) -> None:
    write_csv(pipelines / "data" / "sales.csv", ["sale_id", "amount"], [[i, 10 * i] for i in range(rows)])


def _pipelines(pipelines: Path) -> None:
    _write_sales(pipelines, 2)  # too few rows: the blocking check of `read` fails
    write_yaml(
        pipelines / "auto.yaml",
        {
            "pipeline": "auto",
            "story": {"enabled": False},
            "freshness": {"fail_window": "26h", "warn_window": "25h"},
            "steps": [
                {"layer": "connect", "name": "warehouse", "value": "sqlite:///warehouse.db"},
                {
                    "layer": "ingest",
                    "name": "read",
                    "value": "data/sales.csv",
                    "outputs": {"data": "raw"},
                    "checks": [{"row_count": {"min": 3}, "severity": "error"}],
                    "metadata": {"freshness": {"deadline_cron": "0 9 * * *", "lower_bound_delta": "1h"}},
                },
                {
                    "layer": "transform",
                    "name": "clean",
                    "type": "sql",
                    "value": "SELECT * FROM raw WHERE amount > 0",
                    "inputs": {"raw": "raw"},
                    "outputs": {"data": "cleaned"},
                    "metadata": {"automation": "eager"},
                },
                {
                    "layer": "store",
                    "name": "publish",
                    "value": "cleaned_sales",
                    "params": {"connection": "warehouse", "mode": "overwrite"},
                    "inputs": {"data": "cleaned"},
                },
            ],
        },
    )
    write_yaml(
        pipelines / "stale.yaml",
        {
            "pipeline": "stale",
            "story": {"enabled": False},
            "freshness": {"fail_window": "1m"},  # Dagster's smallest window: failed a minute after a run
            "steps": [{"layer": "ingest", "name": "read", "value": "data/sales.csv", "outputs": {"data": "copy"}}],
        },
    )
    for i, day in enumerate(DAYS):
        rows = 1 if i == 1 else 3  # the 2nd day is short: its check fails, the others pass
        write_csv(
            pipelines / "data" / "daily" / day / "sales.csv", ["sale_id", "amount"], [[n, n] for n in range(rows)]
        )
    write_yaml(
        pipelines / "daily.yaml",
        {
            "pipeline": "daily",
            "story": {"enabled": False},
            "partitions": {"type": "daily", "start": DAYS[0], "end": "2024-01-04"},
            "backfill": {"policy": "single_run"},
            "steps": [
                {
                    "layer": "ingest",
                    "name": "read",
                    "value": "data/daily/{{ partition_key }}/sales.csv",
                    "outputs": {"data": "bronze"},
                    "checks": [{"row_count": {"min": 2}}],
                },
            ],
        },
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("automation")
    home, workspace = write_deployment(root, LOCATION)
    _pipelines(root / "pipelines")
    port = free_port()
    web = start_webserver(home, workspace, port, root / "webserver.log")
    # The freshness daemon evaluates every 2 s instead of 30 s, so states change within the test.
    daemon = start_daemon(home, workspace, root / "daemon.log", {"FRESHNESS_DAEMON_INTERVAL_SECONDS": "2"})
    dep = Deployment(root, port, web, daemon)
    try:
        yield dep
    finally:
        daemon.stop()
        web.stop()


def test_asset_nodes_show_freshness_pools_automation_and_partitioned_checks(deployment: Deployment) -> None:
    dep = deployment
    raw, cleaned, publish = dep.node("auto", "raw"), dep.node("auto", "cleaned"), dep.node("auto", "publish")
    assert raw["internalFreshnessPolicy"] == {
        "__typename": "CronFreshnessPolicy",
        "deadlineCron": "0 9 * * *",
        "lowerBoundDeltaSeconds": 3600,
        "timezone": "UTC",
    }
    assert cleaned["internalFreshnessPolicy"] == {
        "__typename": "TimeWindowFreshnessPolicy",
        "failWindowSeconds": 26 * 3600,
        "warnWindowSeconds": 25 * 3600,
    }
    assert publish["pools"] == ["auto__warehouse"] and cleaned["pools"] == [] and raw["pools"] == []
    # The UI's "(eager) AND (all_deps_blocking_checks_passed)"
    assert cleaned["automationCondition"]["expandedLabel"] == ["(eager)", "AND", "(all_deps_blocking_checks_passed)"]
    assert raw["assetChecksOrError"]["checks"] == [{"name": "row_count", "blocking": True, "partitionDefinition": None}]
    (daily_check,) = dep.node("daily", "bronze")["assetChecksOrError"]["checks"]
    assert daily_check["partitionDefinition"] == {"type": "TIME_WINDOW"}

    # Not materialized yet: freshness unknown; once materialized, the freshness daemon says healthy.
    assert dep.node("stale", "copy")["freshnessStatusInfo"]["freshnessStatus"] == "UNKNOWN"
    assert dep.finished(dep.launch("stale", ["stale", "copy"], []))["status"] == "SUCCESS"
    wait_for(
        lambda: dep.node("stale", "copy")["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY",
        45,
        1,
        "freshness HEALTHY",
    )


def _ticks_after(dep: Deployment, when: float) -> list[dict[str, Any]]:
    return [t for t in dep.ticks() if t["timestamp"] > when and t["status"] != "STARTED"]


def test_eager_step_waits_until_the_blocking_check_of_its_input_passes(deployment: Deployment) -> None:
    """The default automation condition sensor, started as the UI's toggle does, ticks in the
    daemon. ``read`` materializes with its blocking check failing: ticks after that request
    nothing. With the data fixed, ``read``'s check passes and the sensor runs ``clean``."""
    dep = deployment
    started = dep.query(START_SENSOR, {"s": SENSOR})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started

    failed = dep.finished(dep.launch("auto", ["auto", "raw"], ["row_count"]))
    assert failed["status"] == "FAILURE"  # the blocking check failed after `raw` was written
    try:
        # A tick that started after the failed run ended has seen it (the sensor ticks every 30 s).
        wait_for(lambda: _ticks_after(dep, failed["endTime"]), 150, 2, "an automation tick")
    except TimeoutError:
        pytest.fail(dep.logs())
    assert all(not t["requestedAssetKeys"] and not t["runIds"] for t in _ticks_after(dep, failed["endTime"]))
    assert dep.node("auto", "cleaned")["freshnessStatusInfo"]["freshnessStatus"] == "UNKNOWN"  # never materialized

    _write_sales(dep.root / "pipelines", 5)
    passed = dep.finished(dep.launch("auto", ["auto", "raw"], ["row_count"]))
    assert passed["status"] == "SUCCESS"
    try:
        tick = wait_for(lambda: next((t for t in dep.ticks() if t["runIds"]), None), 150, 2, "an automation run")
    except TimeoutError:
        pytest.fail(dep.logs())
    assert tick["timestamp"] > passed["endTime"]
    assert tick["requestedAssetKeys"] == [{"path": ["auto", "cleaned"]}]
    (run_id,) = tick["runIds"]
    assert dep.finished(run_id)["status"] == "SUCCESS"


def test_a_range_backfill_gives_one_check_result_per_partition(deployment: Deployment) -> None:
    dep = deployment
    launched = dep.query(
        LAUNCH_BACKFILL,
        {"params": {"partitionNames": DAYS, "assetSelection": [{"path": ["daily", "bronze"]}], "fromFailure": False}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def completed() -> dict[str, Any] | None:
        backfill = dep.query(BACKFILL_STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]
        return backfill if backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED") else None

    try:
        backfill = wait_for(completed, 180, 1, "the backfill")
    except TimeoutError:
        pytest.fail(dep.logs())
    (run,) = backfill["runs"]  # single_run: one run over the range
    assert run["status"] == "SUCCESS"  # the check is a warning: the run succeeds

    key = {"path": ["daily", "bronze"]}
    executions = dep.query(CHECK_EXECUTIONS, {"k": key, "c": "row_count", "p": None})["assetCheckExecutions"]
    assert {e["partition"]: e["status"] for e in executions} == {
        "2024-01-01": "SUCCEEDED",
        "2024-01-02": "FAILED",
        "2024-01-03": "SUCCEEDED",
    }
    assert {e["runId"] for e in executions} == {run["runId"]}
    (second,) = dep.query(CHECK_EXECUTIONS, {"k": key, "c": "row_count", "p": "2024-01-02"})["assetCheckExecutions"]
    assert second["evaluation"]["success"] is False


def test_freshness_fails_once_the_window_has_passed(deployment: Deployment) -> None:
    """``stale/copy`` (``fail_window: 1m``) was materialized by the first test; a minute later the
    freshness daemon marks it failed (DEGRADED in the UI's health)."""
    dep = deployment
    try:
        wait_for(
            lambda: dep.node("stale", "copy")["freshnessStatusInfo"]["freshnessStatus"] == "DEGRADED",
            150,
            2,
            "freshness DEGRADED",
        )
    except TimeoutError:
        pytest.fail(dep.logs())
