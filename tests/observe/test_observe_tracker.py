"""RunTracker: ODIBI step records, multi-process merge, JSON safety, redaction."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import multiprocessing
import time
import uuid

import numpy as np
import observe_tracker_workers as workers_mod
import pandas as pd
import pytest

from odibi_dagster.engines.base import Snapshot
from odibi_dagster.observe.redact import Redactor
from odibi_dagster.observe.snapshot import snapshot_frame_pandas
from odibi_dagster.observe.tracker import RunTracker, run_dir

STEP_KEYS = {
    "step_name",
    "layer",
    "start_time",
    "end_time",
    "duration_ms",
    "status",
    "before_snapshot",
    "after_snapshot",
    "schema_diff",
    "row_delta",
    "error_message",
    "inputs",
    "outputs",
    "sql",
    "explanation",
}
SNAPSHOT_KEYS = {"name", "timestamp", "row_count", "schema", "sample_data"}


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "value": [i * 1.5 for i in range(n)]})


def test_single_process_lineage_shape(tmp_path):
    tracker = RunTracker(tmp_path, "sales", "run-1")
    tracker.start_step("ingest", "ingest", inputs={}, outputs={"data": "raw"}, explanation="reads the CSV")
    tracker.end_step("ingest", "success", after=snapshot_frame_pandas(_frame(10)))
    before = snapshot_frame_pandas(_frame(10))
    tracker.start_step(
        "agg", "transform", inputs={"raw": "raw"}, outputs={"data": "agg"}, sql="SELECT ...", before=before
    )
    after = snapshot_frame_pandas(pd.DataFrame({"count": [3], "avg_value": [2.0]}))
    tracker.end_step("agg", "success", after=after, extra={"checks": {"not_null": "passed"}, "status": "x"})
    tracker.start_step("save", "store", inputs={"data": "agg"}, before=after)
    tracker.end_step("save", "failed", error_message="disk full")

    lineage = tracker.export_lineage()
    assert set(lineage) == {"pipeline_id", "pipeline", "run_id", "start_time", "steps", "summary"}
    assert lineage["pipeline"] == "sales" and lineage["run_id"] == "run-1"
    assert [s["step_name"] for s in lineage["steps"]] == ["ingest", "agg", "save"]
    for step in lineage["steps"]:
        assert set(step) >= STEP_KEYS
    agg = lineage["steps"][1]
    assert set(agg["before_snapshot"]) == SNAPSHOT_KEYS == set(agg["after_snapshot"])
    assert agg["schema_diff"] == {
        "added_columns": ["count", "avg_value"],
        "removed_columns": ["id", "value"],
        "changed_types": [],
    }
    assert agg["row_delta"] == -9
    assert agg["after_snapshot"]["schema"] == [["count", "int64"], ["avg_value", "double"]]
    assert agg["after_snapshot"]["sample_data"] == [{"count": 3, "avg_value": 2.0}]
    assert agg["checks"] == {"not_null": "passed"} and agg["status"] == "success"  # extra cannot override
    assert agg["duration_ms"] >= 0 and agg["end_time"] >= agg["start_time"]
    assert lineage["steps"][0]["explanation"] == "reads the CSV"
    assert lineage["steps"][2]["error_message"] == "disk full"
    assert lineage["summary"] == {
        "total_steps": 3,
        "success_count": 2,
        "failed_count": 1,
        "running_count": 0,
        "cached_count": 0,
        "cache_hits": 0,
        "cache_misses": 3,
        "total_duration_ms": pytest.approx(sum(s["duration_ms"] for s in lineage["steps"])),
        "wall_clock_ms": lineage["summary"]["wall_clock_ms"],
        "rows_in": 10,
        "rows_out": 1,
    }

    path = tracker.save()
    assert path == run_dir(tmp_path, "sales", "run-1") / "tracker.json"
    assert json.loads(path.read_text())["summary"]["total_steps"] == 3
    assert (tmp_path / "sales" / "run-1" / "steps" / "agg.json").is_file()


def test_publish_writes_tracker_story_and_metrics(tmp_path):
    from odibi_dagster.observe.story import StoryGenerator

    tracker = RunTracker(tmp_path, "p", "r")
    tracker.start_step("a", "ingest", outputs={"data": "x"})
    tracker.end_step("a", "success", after=Snapshot(3, (("id", "int64"),)))
    lineage = tracker.publish(
        StoryGenerator(), {"nodes": [{"name": "a", "layer": "ingest"}], "edges": []}, metrics=True
    )
    assert lineage["summary"]["success_count"] == 1
    assert json.loads(tracker.tracker_path.read_text())["steps"][0]["step_name"] == "a"
    assert tracker.story_path.read_text().startswith("<!DOCTYPE html>")
    assert (tracker.run_dir / "metrics.prom").is_file() and (tracker.run_dir / "metrics.json").is_file()
    tracker.publish()  # without a story: tracker.json only
    with tracker.lock():  # released again: a second publish does not block
        pass
    tracker.publish()


def test_running_steps_and_retry(tmp_path):
    tracker = RunTracker(tmp_path, "p", "r")
    tracker.start_step("a", "ingest")
    assert tracker.export_lineage()["summary"]["running_count"] == 1
    tracker.end_step("a", "failed", error_message="boom")
    record = tracker.start_step("a", "ingest")  # Dagster retry of the same step in the same run
    assert record["attempt"] == 2 and record["status"] == "running" and record["error_message"] is None
    tracker.end_step("a", "success", after=Snapshot(1, (("x", "int64"),)))
    assert tracker.export_lineage()["summary"]["success_count"] == 1


def test_end_step_from_another_tracker_instance(tmp_path):
    RunTracker(tmp_path, "p", "r").start_step("a", "transform", before=Snapshot(5, (("x", "int64"),)))
    time.sleep(0.02)
    record = RunTracker(tmp_path, "p", "r").end_step("a", "success", after=Snapshot(7, (("x", "int64"),)))
    assert record["row_delta"] == 2
    assert record["duration_ms"] >= 15
    # end without any start still gives a valid record
    orphan = RunTracker(tmp_path, "p", "r").end_step("b", "failed", error_message="lost")
    assert orphan["status"] == "failed" and orphan["start_time"] == orphan["end_time"]


def test_json_safe_samples(tmp_path):
    df = pd.DataFrame(
        {
            "d": [dt.date(2024, 1, 2), None],
            "ts": pd.to_datetime(["2024-01-02 03:04:05", None]),
            "dec": [decimal.Decimal("1.10"), decimal.Decimal("NaN")],
            "b": [b"\x00\xff", b"ok"],
            "f": [float("nan"), float("inf")],
            "np": [np.int64(3), np.int64(4)],
            "arr": [np.array([1, 2]), None],
        }
    )
    tracker = RunTracker(tmp_path, "p", "r")
    tracker.start_step("s", "ingest")
    tracker.end_step("s", "success", after=Snapshot(2, (("d", "date32[day]"),), df))
    text = tracker.save().read_text()
    json.loads(text)  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    [row0, row1] = tracker.export_lineage()["steps"][0]["after_snapshot"]["sample_data"]
    assert row0["d"] == "2024-01-02" and row0["ts"] == "2024-01-02T03:04:05"
    assert row0["dec"] == "1.10" and row1["dec"] is None
    assert row0["b"].startswith("base64:") and row1["b"] == "ok"
    assert row0["f"] is None and row1["f"] is None
    assert row0["np"] == 3 and row0["arr"] == [1, 2]
    assert row1["d"] is None and row1["ts"] is None


def test_secrets_are_redacted_on_disk(tmp_path):
    tracker = RunTracker(tmp_path, "p", "r", redactor=Redactor(["sup3rsecret"]))
    df = pd.DataFrame({"conn": ["postgresql://u:sup3rsecret@h/db"], "token": ["sup3rsecret"]})
    tracker.start_step(
        "s", "ingest", inputs={"src": "https://h/x?sig=abcdef"}, sql="SELECT 'sup3rsecret'", explanation="x"
    )
    tracker.end_step("s", "failed", after=snapshot_frame_pandas(df), error_message="auth sup3rsecret failed")
    tracker.save()
    for path in tmp_path.rglob("*.json"):
        text = path.read_text()
        assert "sup3rsecret" not in text and "abcdef" not in text, path


def test_unsafe_names_stay_inside_the_run_folder(tmp_path):
    tracker = RunTracker(tmp_path, "../evil", "run/../../x")
    tracker.start_step("../../step", "ingest")
    tracker.end_step("../../step", "success")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(tmp_path in p.parents for p in files)
    assert tracker.export_lineage()["steps"][0]["step_name"] == "../../step"


def test_multi_process_writers_merge(tmp_path):
    # Separate processes, as with Dagster's multiprocess executor. The fork server imports
    # the package once, so starting many children stays cheap on a small machine.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["observe_tracker_workers"])
    steps = 6
    barrier = ctx.Barrier(steps + 1)
    result = ctx.Queue()
    workers = [ctx.Process(target=workers_mod.run_step, args=(str(tmp_path), i, barrier)) for i in range(steps)]
    reader = ctx.Process(target=workers_mod.read_lineage, args=(str(tmp_path), steps, barrier, result))
    for proc in [*workers, reader]:
        proc.start()
    for proc in [*workers, reader]:
        proc.join(120)
        assert proc.exitcode == 0, f"{proc.name} exited with {proc.exitcode}"
    assert result.get(timeout=5) >= 1
    assert len({p.pid for p in workers}) == steps

    lineage = RunTracker(tmp_path, "pipe", "run-mp").export_lineage()
    by_name = {s["step_name"]: s for s in lineage["steps"]}
    assert sorted(by_name) == [f"step_{i:02d}" for i in range(steps)]
    for i in range(steps):
        record = by_name[f"step_{i:02d}"]
        assert record["attempt"] == workers_mod.ATTEMPTS
        assert record["after_snapshot"]["row_count"] == i * 10 + workers_mod.ATTEMPTS - 1
    assert len({s["pid"] for s in lineage["steps"]}) == steps  # really written by different processes
    assert lineage["summary"]["success_count"] == steps
    # no temp files left behind by the atomic writes
    assert not list((tmp_path / "pipe" / "run-mp" / "steps").glob(".*"))
    # the last publish (under the run lock) saw every step's final record
    saved = json.loads((tmp_path / "pipe" / "run-mp" / "tracker.json").read_text())
    assert saved["summary"]["success_count"] == steps
    assert all(s["attempt"] == workers_mod.ATTEMPTS for s in saved["steps"])
    story = (tmp_path / "pipe" / "run-mp" / "story.html").read_text()
    assert all(f"step_{i:02d}" in story for i in range(steps)) and 'class="step running"' not in story
    metrics = json.loads((tmp_path / "pipe" / "run-mp" / "metrics.json").read_text())
    assert len(metrics["steps"]) == steps


def test_a_blob_store_run_folder_merges_records_written_by_workers_that_share_no_disk():
    """With a remote work dir (here fsspec's ``memory://``) every record, the merged lineage, the
    story and the metrics are blobs under the run's URL: a step that ran on another machine is in
    the story."""
    import fsspec

    from odibi_dagster.observe.story import StoryGenerator

    stories = f"memory://odibi-{uuid.uuid4().hex[:8]}/work/stories"
    worker_a, worker_b = RunTracker(stories, "p", "r"), RunTracker(stories, "p", "r")
    assert worker_a.published_age() is None
    worker_a.start_step("ingest", "ingest", outputs={"data": "raw"})
    worker_a.end_step("ingest", "success", after=Snapshot(4, (("id", "int64"),)))
    worker_b.start_step("clean", "transform", inputs={"data": "raw"}, before=Snapshot(4, (("id", "int64"),)))
    worker_b.end_step("clean", "success", after=Snapshot(3, (("id", "int64"),)))
    assert worker_a.read_step("clean")["row_delta"] == -1  # a record the other worker wrote
    lineage = worker_b.publish(StoryGenerator(), None, metrics=True)
    assert [s["step_name"] for s in lineage["steps"]] == ["ingest", "clean"]

    assert worker_a.story_path == f"{stories}/p/r/story.html" == worker_b.story_path
    assert worker_a.step_path("clean") == f"{stories}/p/r/steps/clean.json"
    fs = fsspec.filesystem("memory")
    assert fs.cat(worker_a.story_path).decode().startswith("<!DOCTYPE html>")
    assert json.loads(fs.cat(str(worker_a.tracker_path)))["summary"]["success_count"] == 2
    assert fs.exists(f"{stories}/p/r/metrics.prom") and fs.exists(f"{stories}/p/r/metrics.json")
    assert 0 <= worker_a.published_age() < 60
    with worker_a.lock():  # nothing to lock on a blob store: saving inside it does not block
        worker_a.save()
