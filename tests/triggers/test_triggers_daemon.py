"""End to end through a real deployment: ``dagster-webserver`` and ``dagster-daemon`` in their own
process group on a temp DAGSTER_HOME. Backfills are launched over GraphQL (what the UI does) and
run by the daemon; the file-watch sensor runs in the daemon and its cursor survives a restart."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from odibi_triggers_lib import (
    LAUNCH_BACKFILL,
    DagsterProcess,
    daily_pipeline,
    days,
    graphql,
    start_daemon,
    start_webserver,
    wait_for,
    write_csv,
    write_daily_data,
    write_deployment,
    write_yaml,
)
from support import free_port

pytestmark = pytest.mark.slow

WEEK = days("2024-01-01", 7)
THREE_DAYS = WEEK[:3]
FILE_SENSOR = "landing__watch_ingest"

HOOKS_PY = """\
import json
from pathlib import Path


def record(event):
    with open(Path(__file__).parent.parent / "hook_events.jsonl", "a") as fh:
        fh.write(json.dumps(event) + "\\n")
"""


@dataclass
class Deployment:
    root: Path
    home: Path
    port: int
    web: DagsterProcess
    daemon: DagsterProcess | None = None
    backfills: dict[str, str] = field(default_factory=dict)  # pipeline -> backfill id

    @property
    def workspace(self) -> Path:
        return self.root / "workspace.yaml"

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def ensure_daemon(self) -> None:
        if self.daemon is None or not self.daemon.alive():
            n = len(list(self.root.glob("daemon*.log")))
            self.daemon = start_daemon(self.home, self.workspace, self.root / f"daemon{n}.log")

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def logs(self) -> str:
        parts = [f"--- webserver\n{self.web.tail(30)}"]
        if self.daemon is not None:
            parts.append(f"--- daemon\n{self.daemon.tail(60)}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deployment")
    home, workspace = write_deployment(root, "odibi_test")
    pipelines = root / "pipelines"
    write_daily_data(pipelines, WEEK)
    daily_pipeline(pipelines, "week", backfill={"policy": "single_run"}, story={"enabled": False})
    daily_pipeline(pipelines, "week_multi", backfill={"policy": "multi_run"}, story={"enabled": False})
    (root / "incoming").mkdir()
    # One dynamic partition per landed file: the daemon adds the partitions the sensor asks for,
    # and the runs of different files may overlap (each has its own datasets).
    write_yaml(
        pipelines / "landing.yaml",
        {
            "pipeline": "landing",
            "story": {"enabled": False},
            "partitions": {"type": "dynamic", "name": "landed_files"},
            "hooks": [
                {"event": "pipeline_start", "function": "deploy_hooks.record"},
                {"event": "pipeline_complete", "function": "deploy_hooks.record"},
            ],
            "sensors": [
                {
                    "type": "file_watch",
                    "path": "../incoming",
                    "pattern": "*.csv",
                    "step": "ingest",
                    "min_interval_seconds": 1,
                    "dynamic_partitions": True,
                }
            ],
            "steps": [
                {"layer": "ingest", "name": "ingest", "value": "../incoming", "outputs": {"data": "raw"}},
                {
                    "layer": "store",
                    "name": "keep",
                    "value": "../landed/{{ partition_key }}",
                    "inputs": {"data": "raw"},
                },
            ],
        },
    )
    (pipelines / "deploy_hooks.py").write_text(HOOKS_PY)
    port = free_port()
    web = start_webserver(home, workspace, port, root / "webserver.log")
    dep = Deployment(root, home, port, web)
    try:
        yield dep
    finally:
        dep.stop_daemon()
        web.stop()


def _launch_backfill(dep: Deployment, pipeline: str, partitions: list[str]) -> str:
    keys = [[pipeline, "bronze"], [pipeline, "summary"], [pipeline, "save_summary"]]
    data = graphql(
        dep.port,
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": partitions,
                "assetSelection": [{"path": k} for k in keys],
                "fromFailure": False,
            }
        },
    )
    result = data["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def _runs(instance: dg.DagsterInstance, **tags: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags=tags)))


def _all_finished(instance: dg.DagsterInstance, expected: int, **tags: str) -> list[dg.DagsterRun] | None:
    runs = _runs(instance, **tags)
    return runs if len(runs) >= expected and all(r.is_finished for r in runs) else None


def test_backfill_over_a_week_launched_over_graphql_and_run_by_the_daemon(deployment: Deployment) -> None:
    dep = deployment
    # Launched before the daemon starts, so its first backfill iteration picks them up.
    dep.backfills = {
        "week": _launch_backfill(dep, "week", WEEK),
        "week_multi": _launch_backfill(dep, "week_multi", THREE_DAYS),
    }
    dep.ensure_daemon()
    with dep.instance() as instance:
        try:
            single = wait_for(
                lambda: _all_finished(instance, 1, **{"dagster/backfill": dep.backfills["week"]}),
                240,
                1,
                "the single-run backfill",
            )
            multi = wait_for(
                lambda: _all_finished(instance, 3, **{"dagster/backfill": dep.backfills["week_multi"]}),
                240,
                1,
                "the multi-run backfill",
            )
        except TimeoutError:
            pytest.fail(dep.logs())
        # backfill: {policy: single_run} -> one run over the range; multi_run -> one run per day.
        assert [r.status for r in single] == [dg.DagsterRunStatus.SUCCESS], dep.logs()
        assert single[0].tags["dagster/asset_partition_range_start"] == WEEK[0]
        assert single[0].tags["dagster/asset_partition_range_end"] == WEEK[-1]
        assert {r.status for r in multi} == {dg.DagsterRunStatus.SUCCESS}, dep.logs()
        assert sorted(_partition_of(r) for r in multi) == THREE_DAYS
        # Seven partitions of data, one file each, and a materialization per partition.
        folder = dep.root / "pipelines" / ".odibi" / "datasets" / "week" / "summary"
        assert sorted(p.name for p in folder.iterdir()) == [f"partition={d}.parquet" for d in WEEK]
        out = dep.root / "pipelines" / "out"
        assert all(pd.read_csv(out / f"{d}.csv")["pk"].tolist() == [d] for d in WEEK)
        for pipeline, expected in (("week", WEEK), ("week_multi", THREE_DAYS)):
            mats = instance.fetch_materializations(dg.AssetKey([pipeline, "summary"]), limit=100).records
            assert sorted(m.partition_key for m in mats) == expected


def _partition_of(run: dg.DagsterRun) -> str:
    if "dagster/partition" in run.tags:
        return run.tags["dagster/partition"]
    start, end = (
        run.tags["dagster/asset_partition_range_start"],
        run.tags["dagster/asset_partition_range_end"],
    )
    assert start == end, run.tags  # multi_run: one partition per run
    return start


def _drop(dep: Deployment, name: str, rows: int) -> None:
    # Written beside the folder and moved in: the sensor never sees half a file.
    tmp = dep.root / f".{name}.part"
    write_csv(tmp, ["file", "v"], [[name, i] for i in range(rows)])
    os.rename(tmp, dep.root / "incoming" / name)


def _sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return _runs(instance, **{"odibi/sensor": FILE_SENSOR})


def test_file_watch_sensor_in_the_daemon_three_files_three_runs(deployment: Deployment) -> None:
    dep = deployment
    dep.ensure_daemon()
    for i, name in enumerate(["a.csv", "b c.csv", "é'; x.csv"]):
        _drop(dep, name, rows=i + 1)
    with dep.instance() as instance:
        try:
            runs = wait_for(
                lambda: _all_finished(instance, 3, **{"odibi/sensor": FILE_SENSOR}),
                180,
                1,
                "three file-watch runs",
            )
        except TimeoutError:
            pytest.fail(dep.logs())
        time.sleep(6)  # more sensor evaluations: nothing new may start
        runs = _sensor_runs(instance)
        assert len(runs) == 3, dep.logs()
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}, dep.logs()
        assert sorted(r.tags["odibi/file"] for r in runs) == sorted(["a.csv", "b c.csv", "é'; x.csv"])
        assert sorted(instance.get_dynamic_partitions("landed_files")) == sorted(["a.csv", "b c.csv", "é'; x.csv"])
    for i, name in enumerate(["a.csv", "b c.csv", "é'; x.csv"]):
        assert pd.read_csv(dep.root / "landed" / name)["file"].tolist() == [name] * (i + 1)


def test_file_watch_cursor_survives_a_daemon_restart(deployment: Deployment) -> None:
    dep = deployment
    dep.ensure_daemon()
    with dep.instance() as instance:
        wait_for(lambda: _all_finished(instance, 3, **{"odibi/sensor": FILE_SENSOR}), 180, 1, "earlier runs")
    before = len(_sensor_runs(dep.instance()))
    dep.stop_daemon()
    # A new process on the same DAGSTER_HOME: the cursor comes from the instance's storage.
    with dep.instance() as fresh:
        from dagster._core.definitions.run_request import InstigatorType

        states = {s.instigator_name: s for s in fresh.all_instigator_state(instigator_type=InstigatorType.SENSOR)}
        cursor = states[FILE_SENSOR].instigator_data.cursor
        assert json.loads(cursor)["v"] == 1 and len(cursor) < 1000
    dep.ensure_daemon()
    _drop(dep, "d.csv", rows=4)
    with dep.instance() as instance:
        try:
            wait_for(
                lambda: _all_finished(instance, before + 1, **{"odibi/sensor": FILE_SENSOR}),
                180,
                1,
                "the run of the new file",
            )
        except TimeoutError:
            pytest.fail(dep.logs())
        time.sleep(6)
        runs = _sensor_runs(instance)
        assert len(runs) == before + 1, dep.logs()
        assert sorted(r.tags["odibi/file"] for r in runs).count("a.csv") == 1
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}


def test_backfills_are_marked_complete(deployment: Deployment) -> None:
    dep = deployment
    # Checks the backfills the earlier tests of this module launched (they run in file order).
    assert dep.backfills, "run together with the backfill tests of this module"
    dep.ensure_daemon()
    from dagster._core.execution.backfill import BulkActionStatus

    finished = {
        BulkActionStatus.COMPLETED,
        BulkActionStatus.COMPLETED_SUCCESS,
        BulkActionStatus.COMPLETED_FAILED,
        BulkActionStatus.FAILED,
        BulkActionStatus.CANCELED,
    }
    with dep.instance() as instance:
        for backfill_id in dep.backfills.values():

            def status(b: str = backfill_id) -> BulkActionStatus | None:
                backfill = instance.get_backfill(b)
                return backfill.status if backfill is not None and backfill.status in finished else None

            try:
                final = wait_for(status, 120, 1, "the backfill's completion")
            except TimeoutError:
                pytest.fail(dep.logs())
            assert final == BulkActionStatus.COMPLETED_SUCCESS


def test_pipeline_hooks_are_called_by_the_daemon(deployment: Deployment) -> None:
    """Run-status sensors in the daemon deliver pipeline_start / pipeline_complete of every
    file-watch run (pipelines without hooks get none)."""
    dep = deployment
    dep.ensure_daemon()
    with dep.instance() as instance:
        runs = {r.run_id for r in _sensor_runs(instance) if r.status == dg.DagsterRunStatus.SUCCESS}
    assert runs, "needs the file-watch tests of this module"
    path = dep.root / "hook_events.jsonl"

    def delivered() -> list[dict] | None:
        events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        done = {e["run_id"] for e in events if e["event"] == "pipeline_complete"}
        started = {e["run_id"] for e in events if e["event"] == "pipeline_start"}
        return events if runs <= done and runs <= started else None

    try:
        events = wait_for(delivered, 120, 1, "the pipeline hooks")
    except TimeoutError:
        pytest.fail(dep.logs())
    complete = [e for e in events if e["event"] == "pipeline_complete" and e["run_id"] in runs]
    assert len(complete) == len(runs)  # once per run, even across the daemon restart
    assert all(
        e["pipeline_name"] == "landing" and e["success_count"] == 2 and e["failed_count"] == 0 and e["duration_ms"] > 0
        for e in complete
    )
    starts = [e for e in events if e["event"] == "pipeline_start"]
    assert {e["run_id"] for e in starts} == runs and all(e["start_time"] for e in starts)
    assert all(e["pipeline_name"] == "landing" for e in events)


SENSOR_TICK_LOGS = """
query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { ticks(limit: 50) { status error { message }
    logEvents { events { message level } } } } } } }
"""


def test_a_link_loop_and_a_link_out_of_the_folder_never_stop_the_daemon_sensor(deployment: Deployment) -> None:
    """One bad entry never stops a sensor: the daemon's ticks skip it, say so in the tick's log
    (what the UI shows), and the folder's other files still get their runs."""
    dep = deployment
    dep.ensure_daemon()
    outside = dep.root / "outside.csv"
    write_csv(outside, ["file", "v"], [["outside.csv", 1]])
    (dep.root / "incoming" / "loop.csv").symlink_to("loop.csv")
    (dep.root / "incoming" / "outside.csv").symlink_to(outside)
    _drop(dep, "after_links.csv", rows=2)
    with dep.instance() as instance:
        try:
            wait_for(
                lambda: (
                    [
                        r
                        for r in _sensor_runs(instance)
                        if r.tags.get("odibi/file") == "after_links.csv" and r.is_finished
                    ]
                    or None
                ),
                180,
                1,
                "the run of after_links.csv",
            )
        except TimeoutError:
            pytest.fail(dep.logs())
        files = [r.tags.get("odibi/file") for r in _sensor_runs(instance)]
    assert "outside.csv" not in files and "loop.csv" not in files
    selector = {"repositoryLocationName": "odibi_test", "repositoryName": "__repository__", "sensorName": FILE_SENSOR}
    ticks = graphql(dep.port, SENSOR_TICK_LOGS, {"selector": selector})["sensorOrError"]["sensorState"]["ticks"]
    assert all(t["status"] != "FAILURE" for t in ticks), [t["error"] for t in ticks if t["error"]]
    messages = [e["message"] for t in ticks for e in t["logEvents"]["events"]]
    assert any("skipped loop.csv: cannot be read" in m for m in messages), messages[:20]
    assert any("skipped outside.csv: a link to" in m and "outside the watched folder" in m for m in messages)
