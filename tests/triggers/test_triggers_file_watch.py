"""File-watch sensors over real directories: one run per new or changed file, files still being
written wait, thousands of files, awkward names, dynamic partitions per file, and a cursor that
survives a fresh instance load."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from triggers_support import build, evaluate_sensor, launch, write_csv, write_yaml

from odibi_dagster.config.partitions import file_partition_key
from odibi_dagster.triggers.sensors import FileWatchCursor, WatchedFile, scan_files

SENSOR = "landing__watch_ingest"
OLD = time.time() - 3600  # an mtime well past the settle time: the file is complete


def landing_pipeline(root: Path, *, partitions: dict | None = None, **sensor: Any) -> Path:
    """Ingest the landed file, tag every row with the file's name, store the result."""
    doc: dict[str, Any] = {
        "pipeline": "landing",
        "story": {"enabled": False},
        "sensors": [
            {
                "type": "file_watch",
                "path": "incoming",
                "pattern": "*.csv",
                "step": "ingest",
                "min_interval_seconds": 5,
                **sensor,
            }
        ],
        "steps": [
            {"layer": "ingest", "name": "ingest", "value": "incoming/latest.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "count",
                "type": "sql",
                "value": "SELECT marker, COUNT(*) AS n FROM raw GROUP BY marker",
                "inputs": {"raw": "raw"},
                "outputs": {"data": "counted"},
            },
        ],
    }
    if partitions is not None:
        doc["partitions"] = partitions
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    return write_yaml(root / "landing.yaml", doc)


def drop(root: Path, rel: str, rows: int = 3, marker: str | None = None, mtime: float | None = OLD) -> Path:
    path = root / "incoming" / rel
    write_csv(path, ["marker", "v"], [[marker or rel, i] for i in range(rows)])
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def counted(root: Path, partition: str | None = None) -> list[dict[str, Any]]:
    folder = root / ".odibi" / "datasets" / "landing" / "counted"
    from odibi_dagster.io.dataset_store import partition_file_stem

    return pd.read_parquet(folder / f"{partition_file_stem(partition)}.parquet").to_dict("records")


def test_new_file_starts_one_run_and_the_same_file_never_again(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(landing_pipeline(project))
    path = drop(project, "sales 1.csv", rows=4)
    tick = evaluate_sensor(defs, SENSOR, instance)
    (request,) = tick.run_requests
    st = path.stat()
    assert request.run_key == f"sales 1.csv|{st.st_size}|{st.st_mtime_ns}"
    assert request.run_config == {"ops": {"landing__ingest": {"config": {"source": str(path)}}}}
    assert request.tags["odibi/file"] == "sales 1.csv" and request.tags["odibi/file_size"] == str(st.st_size)
    result = launch(defs, "landing", instance, request)
    assert result.success
    assert counted(project) == [{"marker": "sales 1.csv", "n": 4}]

    again = evaluate_sensor(defs, SENSOR, instance, tick.cursor)
    assert again.run_requests == [] and "no new or changed files" in (again.skip_message or "")
    assert evaluate_sensor(defs, SENSOR, instance, again.cursor).run_requests == []


def test_a_file_url_path_watches_the_local_folder(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(landing_pipeline(project, path=f"file://{project / 'incoming'}"))
    path = drop(project, "a.csv", rows=2)
    (request,) = evaluate_sensor(defs, SENSOR, instance).run_requests
    assert request.run_config == {"ops": {"landing__ingest": {"config": {"source": str(path)}}}}
    assert launch(defs, "landing", instance, request).success
    assert counted(project) == [{"marker": "a.csv", "n": 2}]


def test_rewritten_file_starts_exactly_one_new_run(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(landing_pipeline(project))
    drop(project, "a.csv", rows=2)
    first = evaluate_sensor(defs, SENSOR, instance)
    assert len(first.run_requests) == 1
    drop(project, "a.csv", rows=5, mtime=OLD + 60)  # rewritten: new size and mtime
    second = evaluate_sensor(defs, SENSOR, instance, first.cursor)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    assert evaluate_sensor(defs, SENSOR, instance, second.cursor).run_requests == []


def test_file_being_written_waits_until_its_size_is_stable(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(landing_pipeline(project))  # settle_seconds: 60 (default)
    path = project / "incoming" / "big.csv"
    with open(path, "w") as fh:
        fh.write("marker,v\n")
        fh.write("big,1\n")
        fh.flush()
        tick = evaluate_sensor(defs, SENSOR, instance)
        assert tick.run_requests == [] and "still being written" in tick.skip_message
        fh.write("big,2\n")
        fh.flush()
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 1_000_000))  # a later write
        tick = evaluate_sensor(defs, SENSOR, instance, tick.cursor)
        assert tick.run_requests == []  # grew since the last look: still not complete
    tick = evaluate_sensor(defs, SENSOR, instance, tick.cursor)
    (request,) = tick.run_requests  # same size and mtime twice in a row: complete
    assert request.run_key.endswith(f"|{path.stat().st_size}|{path.stat().st_mtime_ns}")
    assert launch(defs, "landing", instance, request).success
    assert counted(project) == [{"marker": "big", "n": 2}]
    assert evaluate_sensor(defs, SENSOR, instance, tick.cursor).run_requests == []


def test_settle_time_lets_an_old_file_run_at_once(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(landing_pipeline(project, settle_seconds=0.5))
    drop(project, "fresh.csv", mtime=None)
    time.sleep(0.6)
    assert len(evaluate_sensor(defs, SENSOR, instance).run_requests) == 1


def test_a_thousand_files_at_once_and_a_small_cursor(project: Path, persistent_instance: dg.DagsterInstance) -> None:
    # one dynamic partition per file: runs of different files are independent, all start at once
    instance = persistent_instance
    defs = build(landing_pipeline(project, partitions={"type": "dynamic"}, dynamic_partitions=True))
    for i in range(1000):
        drop(project, f"part-{i:04d}.csv", rows=1)
    started = time.perf_counter()
    tick = evaluate_sensor(defs, SENSOR, instance)
    assert time.perf_counter() - started < 30
    assert len(tick.run_requests) == 1000
    assert len({r.run_key for r in tick.run_requests}) == 1000
    assert {r.run_config["ops"]["landing__ingest"]["config"]["source"] for r in tick.run_requests} == {
        str(project / "incoming" / f"part-{i:04d}.csv") for i in range(1000)
    }
    # The cursor remembers the watermark and the files of its last instant, not all 1,000 files.
    assert len(tick.cursor) < 2000, tick.cursor
    again = evaluate_sensor(defs, SENSOR, instance, tick.cursor)
    assert again.run_requests == []
    drop(project, "part-1000.csv")
    (new,) = evaluate_sensor(defs, SENSOR, instance, again.cursor).run_requests
    assert new.tags["odibi/file"] == "part-1000.csv"


def test_a_file_moved_in_with_an_old_mtime_is_still_new(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(landing_pipeline(project))
    drop(project, "first.csv", mtime=None)
    time.sleep(0.01)
    tick = evaluate_sensor(defs, SENSOR, instance)
    tick = evaluate_sensor(defs, SENSOR, instance, tick.cursor)
    assert len(tick.run_requests) == 1
    # `mv` (or tar/cp -p) keeps an mtime older than everything seen so far; its ctime is new.
    staged = project / "staging.csv"
    write_csv(staged, ["marker", "v"], [["moved", 1]])
    os.utime(staged, (OLD - 86400, OLD - 86400))
    os.rename(staged, project / "incoming" / "moved.csv")
    (request,) = evaluate_sensor(defs, SENSOR, instance, tick.cursor).run_requests
    assert request.tags["odibi/file"] == "moved.csv"


NAMES = ["my sales file.csv", "it's; DROP TABLE t; --.csv", 'quo"ted.csv', "données été 日本.csv"]


def test_file_names_with_spaces_quotes_semicolons_and_unicode_reach_the_step(
    project: Path, instance: dg.DagsterInstance
) -> None:
    defs = build(landing_pipeline(project))
    for i, name in enumerate(NAMES):
        drop(project, name, rows=i + 1)
    cursor, seen = None, []
    for _ in NAMES:  # unpartitioned: one run per tick, the next once it finished
        tick = evaluate_sensor(defs, SENSOR, instance, cursor)
        (request,) = tick.run_requests
        cursor, name = tick.cursor, request.tags["odibi/file"]
        seen.append(name)
        result = launch(defs, "landing", instance, request)
        assert result.success, name
        assert counted(project) == [{"marker": name, "n": NAMES.index(name) + 1}]
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.tags["odibi/file"] == name
    assert sorted(seen) == sorted(NAMES)
    assert evaluate_sensor(defs, SENSOR, instance, cursor).run_requests == []


def test_unpartitioned_pipelines_get_one_file_watch_run_at_a_time(project: Path, instance: dg.DagsterInstance) -> None:
    """Runs of an unpartitioned pipeline share its datasets: a second file waits in the cursor
    while the first file's run is in flight, then gets its own run."""
    defs = build(landing_pipeline(project))
    drop(project, "a.csv")
    drop(project, "b.csv")
    first = evaluate_sensor(defs, SENSOR, instance)
    (request,) = first.run_requests
    assert request.tags["odibi/file"] == "a.csv"
    # what the daemon does with the request: a run that is now in flight
    run = instance.create_run_for_job(
        defs.resolve_job_def("landing"),
        run_config=request.run_config,
        tags=dict(request.tags),
        status=dg.DagsterRunStatus.STARTED,
    )
    waiting = evaluate_sensor(defs, SENSOR, instance, first.cursor)
    assert waiting.run_requests == []
    assert f"1 file(s) wait for run {run.run_id} to finish" in (waiting.skip_message or "")
    instance.report_run_canceled(run)
    (second,) = evaluate_sensor(defs, SENSOR, instance, waiting.cursor).run_requests
    assert second.tags["odibi/file"] == "b.csv"


def test_dynamic_partitions_one_per_file_and_reprocessing_one_file_alone(
    project: Path, persistent_instance: dg.DagsterInstance
) -> None:
    instance = persistent_instance
    path = landing_pipeline(
        project, partitions={"type": "dynamic", "name": "landed"}, dynamic_partitions=True, recursive=True
    )
    defs = build(path)
    names = ["2024/jan it's.csv", "日本.csv"]
    for i, rel in enumerate(names):
        drop(project, rel, rows=i + 2)
    tick = evaluate_sensor(defs, SENSOR, instance)
    keys = sorted(file_partition_key(n) for n in names)
    assert sorted(r.partition_key for r in tick.run_requests) == keys
    (add,) = tick.dynamic_partitions_requests
    assert add.partitions_def_name == "landed" and sorted(add.partition_keys) == keys
    instance.add_dynamic_partitions("landed", list(add.partition_keys))  # what the daemon does
    for request in tick.run_requests:
        assert launch(defs, "landing", instance, request).success
    assert counted(project, "2024/jan it's.csv") == [{"marker": "2024/jan it's.csv", "n": 2}]
    assert counted(project, "日本.csv") == [{"marker": "日本.csv", "n": 3}]

    # Re-process one file alone (e.g. from the UI): no run config, the key names the file.
    drop(project, "日本.csv", rows=7)
    job = defs.resolve_job_def("landing")
    assert job.execute_in_process(instance=instance, partition_key="日本.csv").success
    assert counted(project, "日本.csv") == [{"marker": "日本.csv", "n": 7}]
    assert counted(project, "2024/jan it's.csv") == [{"marker": "2024/jan it's.csv", "n": 2}]

    # A key pointing outside the watched directory is refused.
    (project / "secret.csv").write_text("marker,v\nsecret,1\n")
    instance.add_dynamic_partitions("landed", ["../secret.csv"])
    bad = job.execute_in_process(instance=instance, partition_key="../secret.csv", raise_on_error=False)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "outside the watched directory" in str(failure.event_specific_data.error)


def test_time_partitioned_pipeline_takes_the_partition_from_the_file_name(
    project: Path, instance: dg.DagsterInstance
) -> None:
    defs = build(landing_pipeline(project, partitions={"type": "daily", "start": "2024-01-01", "end": "2024-01-10"}))
    drop(project, "sales_2024-01-03.csv")
    drop(project, "undated.csv")
    tick = evaluate_sensor(defs, SENSOR, instance)
    by_file = {r.tags["odibi/file"]: r.partition_key for r in tick.run_requests}
    assert by_file == {"sales_2024-01-03.csv": "2024-01-03", "undated.csv": "2024-01-09"}
    request = next(r for r in tick.run_requests if r.partition_key == "2024-01-03")
    assert launch(defs, "landing", instance, request).success
    assert counted(project, "2024-01-03") == [{"marker": "sales_2024-01-03.csv", "n": 3}]


def test_static_partitioned_pipeline_skips_files_naming_no_partition(
    project: Path, instance: dg.DagsterInstance
) -> None:
    defs = build(landing_pipeline(project, partitions={"type": "static", "values": ["north", "south"]}, recursive=True))
    drop(project, "south/day1.csv")
    drop(project, "east/day1.csv")
    tick = evaluate_sensor(defs, SENSOR, instance)
    assert [(r.tags["odibi/file"], r.partition_key) for r in tick.run_requests] == [("south/day1.csv", "south")]


def test_pattern_recursion_and_hidden_files(project: Path) -> None:
    root = project / "incoming"
    for rel in ["a.csv", "b.txt", ".hidden.csv", "sub/c.csv", ".tmp/d.csv", "sub/deeper/e.csv"]:
        write_csv(root / rel, ["x"], [[1]])
    assert sorted(f.rel for f in scan_files(str(root), "*.csv")) == ["a.csv"]
    assert sorted(f.rel for f in scan_files(str(root), "*.csv", recursive=True)) == [
        "a.csv",
        "sub/c.csv",
        "sub/deeper/e.csv",
    ]
    assert sorted(f.rel for f in scan_files(str(root), "sub/*.csv", recursive=True)) == ["sub/c.csv"]
    assert sorted(f.rel for f in scan_files(str(root), ".*.csv")) == [".hidden.csv"]


def test_missing_directory_skips_and_relative_path_resolves_against_the_config(
    project: Path, instance: dg.DagsterInstance
) -> None:
    cfg_dir = project / "configs"
    path = landing_pipeline(cfg_dir)
    (cfg_dir / "incoming").rmdir()
    defs = build(path)
    tick = evaluate_sensor(defs, SENSOR, instance)
    assert tick.run_requests == [] and f"{cfg_dir / 'incoming'} does not exist" in tick.skip_message
    drop(cfg_dir, "late.csv")
    (request,) = evaluate_sensor(defs, SENSOR, instance, tick.cursor).run_requests
    assert request.run_config["ops"]["landing__ingest"]["config"]["source"] == str(cfg_dir / "incoming" / "late.csv")


def test_sensor_definition_settings(project: Path) -> None:
    defs = build(landing_pipeline(project, min_interval_seconds=45, enabled=False, name="landing files"))
    sensor = defs.resolve_sensor_def("landing_files")
    assert sensor.minimum_interval_seconds == 45
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.job_name == "landing"
    assert str(project / "incoming") in (sensor.description or "")
    enabled = build(landing_pipeline(project / "other"))
    assert enabled.resolve_sensor_def(SENSOR).default_status == dg.DefaultSensorStatus.RUNNING


def test_cursor_advance_is_pure_and_bounded() -> None:
    def f(rel: str, size: int, mtime: int, changed: int | None = None) -> WatchedFile:
        return WatchedFile(rel, f"/x/{rel}", size, mtime, changed if changed is not None else mtime)

    now, settle = 10_000, 100
    cur = FileWatchCursor()
    ready, cur = cur.advance([f("a", 1, 10), f("b", 1, 9_950)], now, settle)  # b is 50ns old: pending
    assert [x.rel for x in ready] == ["a"] and cur.pending == {"b": "1:9950"} and cur.watermark_ns == 9_950
    ready, cur = cur.advance([f("a", 1, 10), f("b", 1, 9_950)], now + 10, settle)
    assert [x.rel for x in ready] == ["b"] and cur.pending == {} and cur.done == {"b": "1:9950"}
    # Same instant, new name: still new (the boundary set), then nothing.
    ready, cur = cur.advance([f("a", 1, 10), f("b", 1, 9_950), f("c", 1, 9_950)], now + 200, settle)
    assert [x.rel for x in ready] == ["c"] and set(cur.done) == {"b", "c"}
    assert FileWatchCursor.parse(cur.dumps()) == cur
    ready, cur = cur.advance([f("a", 1, 10), f("b", 1, 9_950), f("c", 1, 9_950)], now + 300, settle)
    assert ready == []


def test_cursor_survives_a_fresh_instance_load(project: Path, dagster_home: Path) -> None:
    """The daemon keeps the cursor in the instance's schedule storage; a new process (a new
    instance on the same DAGSTER_HOME) resumes from it: old files are not run again."""
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, SensorInstigatorData
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    config = landing_pipeline(project, partitions={"type": "dynamic"}, dynamic_partitions=True)
    defs = build(config)
    for i in range(3):
        drop(project, f"f{i}.csv")
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(
            InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=str(config))), "__repository__"
        ),
        SENSOR,
    )
    with dg.DagsterInstance.from_config(str(dagster_home)) as first:
        tick = evaluate_sensor(defs, SENSOR, first)
        assert len(tick.run_requests) == 3
        first.add_instigator_state(
            InstigatorState(
                origin,
                InstigatorType.SENSOR,
                InstigatorStatus.RUNNING,
                SensorInstigatorData(cursor=tick.cursor),
            )
        )
    drop(project, "f3.csv")
    with dg.DagsterInstance.from_config(str(dagster_home)) as second:
        (state,) = second.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        assert state.instigator_name == SENSOR
        cursor = state.instigator_data.cursor
        assert json.loads(cursor)["v"] == 1
        (request,) = evaluate_sensor(defs, SENSOR, second, cursor).run_requests
        assert request.tags["odibi/file"] == "f3.csv"


@pytest.mark.parametrize("bad", ['{"v": 99, "wm": 0}'])
def test_unknown_cursor_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cursor version"):
        FileWatchCursor.parse(bad)


def test_links_leaving_the_folder_are_skipped_and_loops_never_stop_the_scan(tmp_path: Path) -> None:
    root = tmp_path / "incoming"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.csv").write_text("x\n1\n")
    (outside / "deep" / "more.csv").write_text("x\n1\n")
    (root / "good.csv").write_text("x\n1\n")
    (root / "sub" / "nested.csv").write_text("x\n1\n")
    (root / "inside_link.csv").symlink_to(root / "good.csv")  # stays inside: followed
    (root / "secret.csv").symlink_to(outside / "secret.csv")  # leaves the folder
    (root / "sub" / "away").symlink_to(outside / "deep", target_is_directory=True)  # a folder outside
    (root / "sub" / "loop").symlink_to("..", target_is_directory=True)  # incoming/sub/loop -> incoming
    (root / "self.csv").symlink_to("self.csv")  # ELOOP: "Too many levels of symbolic links"
    (root / "gone.csv").symlink_to(root / "missing.csv")  # dangling
    skipped: list[str] = []
    files = scan_files(str(root), "*.csv", recursive=True, skipped=skipped)
    assert sorted(f.rel for f in files) == ["good.csv", "inside_link.csv", "sub/nested.csv"]
    assert any(s.startswith("secret.csv: a link to") and "outside the watched folder" in s for s in skipped)
    assert any(s.startswith("sub/away: a link to") for s in skipped)
    assert any(s.startswith("sub/loop: a folder already watched") for s in skipped)
    assert any(s.startswith("self.csv: cannot be read") for s in skipped)
    assert any(s.startswith("gone.csv: a link to nothing") for s in skipped)
    # Following links out of the folder is an explicit choice.
    followed = scan_files(str(root), "*.csv", recursive=True, follow_symlinks=True)
    assert sorted(f.rel for f in followed) == [
        "good.csv",
        "inside_link.csv",
        "secret.csv",
        "sub/away/more.csv",
        "sub/nested.csv",
    ]


def test_a_bad_entry_is_skipped_with_a_warning_and_the_other_files_still_run(
    project: Path, instance: dg.DagsterInstance
) -> None:
    defs = build(landing_pipeline(project))
    drop(project, "a.csv")
    (project / "incoming" / "loop.csv").symlink_to("loop.csv")
    outside = project / "outside.csv"
    write_csv(outside, ["marker", "v"], [["outside", 1]])
    (project / "incoming" / "outside.csv").symlink_to(outside)
    result = evaluate_sensor(defs, SENSOR, instance)
    assert [r.tags["odibi/file"] for r in result.run_requests] == ["a.csv"]
