"""Running pipelines through Dagster: failure isolation, re-execution from failure over
persisted datasets, each step in its own process, atomic writes of store steps."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from translate_support import (
    HIGH_VALUE_IDS,
    MULTIPROCESS_CONFIG,
    Project,
    failure_message,
    persistent_instance,
    reconstructable_job,
    run_pipeline,
    run_step_events,
    sample_frame,
    sqlite_rows,
    step_events,
)

from odibi_dagster import build_definitions

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}

FLAKY = """
import os
from pathlib import Path

import pandas as pd


def _log(path: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\\n")


def prepare(data: pd.DataFrame, log: str) -> pd.DataFrame:
    _log(log)
    out = data.copy()
    out["doubled"] = out["value"] * 2
    return out


def score(data: pd.DataFrame, flag: str, log: str) -> pd.DataFrame:
    _log(log)
    if Path(flag).exists():
        raise RuntimeError("scoring is broken today: " + Path(flag).read_text().strip())
    return data[data["value"] > 100].sort_values("id")
"""


def flaky_pipeline(project: Project, name: str = "flaky") -> Path:
    """read -> prepare (function) -> score (function, fails while a flag file exists) -> save_scored,
    plus an independent branch prepare -> summary (SQL) -> save_summary."""
    project.sample_csv()
    fn = project.module(FLAKY)
    logs = project.path("logs")
    logs.mkdir(exist_ok=True)
    return project.pipeline(
        name,
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "prepare",
                "type": "function",
                "value": f"{fn}.prepare",
                "params": {"log": str(logs / "prepare.log")},
                "inputs": {"data": "raw"},
                "outputs": {"data": "prepared"},
            },
            {
                "layer": "transform",
                "name": "score",
                "type": "function",
                "value": f"{fn}.score",
                "params": {"flag": str(project.path("FAIL")), "log": str(logs / "score.log")},
                "inputs": {"data": "prepared"},
                "outputs": {"data": "scored"},
            },
            {
                "layer": "store",
                "name": "save_scored",
                "value": "out/scored.parquet",
                "inputs": {"data": "scored"},
            },
            {
                "layer": "transform",
                "name": "summary",
                "type": "sql",
                "value": "SELECT category, SUM(doubled) AS total FROM p GROUP BY category ORDER BY category",
                "inputs": {"p": "prepared"},
                "outputs": {"data": "summary"},
            },
            {
                "layer": "store",
                "name": "save_summary",
                "value": "out/summary.csv",
                "inputs": {"data": "summary"},
            },
        ],
    )


def log_lines(project: Project, name: str) -> list[str]:
    path = project.path(f"logs/{name}.log")
    return path.read_text().split() if path.exists() else []


# ----------------------------------------------------------------------------- failure isolation


def test_a_failing_step_stops_only_its_downstream_and_upstream_outputs_stay(project: Project) -> None:
    path = flaky_pipeline(project)
    project.path("FAIL").write_text("on purpose")
    result = run_pipeline(path, job="flaky")
    assert not result.success
    assert step_events(result, "STEP_FAILURE") == {"score"}
    assert "scoring is broken today: on purpose" in failure_message(result, "score")
    # the other branch ran to the end
    assert step_events(result, "STEP_SUCCESS") == {"read", "prepare", "summary", "save_summary"}
    # the failed step's downstream never started
    assert "save_scored" not in step_events(result, "STEP_START")
    assert not project.path("out/scored.parquet").exists()
    # upstream datasets stay, the failed one was never written
    datasets = project.datasets_dir("flaky")
    assert (datasets / "prepared" / "data.parquet").exists()
    assert not (datasets / "scored").exists()
    assert len(pd.read_csv(project.path("out/summary.csv"))) == 3
    # ODIBI's tracker records the failure in the run's story
    stories = list((project.root / ".odibi" / "stories" / "flaky").glob("*/tracker.json"))
    assert len(stories) == 1
    assert "scoring is broken today" in stories[0].read_text()


# ----------------------------------------------------------------------------- re-execution


def test_reexecution_from_failure_runs_only_the_failed_step_and_its_downstream(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_job_env: None
) -> None:
    path = flaky_pipeline(project)
    job = reconstructable_job(monkeypatch, path, "flaky")
    project.path("FAIL").write_text("first attempt")
    with persistent_instance(tmp_path / "dagster_home") as instance:
        first = dg.execute_job(job, instance=instance, run_config=IN_PROCESS, raise_on_error=False)
        assert not first.success
        assert run_step_events(instance, first.run_id, "STEP_FAILURE") == {"score"}
        assert log_lines(project, "prepare") and len(log_lines(project, "prepare")) == 1

        project.path("FAIL").unlink()  # the cause is fixed
        options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
        second = dg.execute_job(job, instance=instance, reexecution_options=options, raise_on_error=False)
        assert second.success

        started = run_step_events(instance, second.run_id, "STEP_START")
        assert started == {"score", "save_scored"}
        run = instance.get_run_by_id(second.run_id)
        assert run is not None and run.parent_run_id == first.run_id
    # the upstream function did NOT run again (its dataset from the first run was reused) ...
    assert len(log_lines(project, "prepare")) == 1
    # ... the failed one ran twice (failed, then succeeded)
    assert len(log_lines(project, "score")) == 2
    scored = pd.read_parquet(project.path("out/scored.parquet"))
    assert scored["id"].tolist() == HIGH_VALUE_IDS
    assert scored["doubled"].tolist() == [v * 2 for v in scored["value"]]


def test_steps_run_in_their_own_processes_with_the_multiprocess_executor(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_job_env: None
) -> None:
    path = flaky_pipeline(project, "multi")
    job = reconstructable_job(monkeypatch, path, "multi")
    # three steps are enough (a subprocess per step is slow to start)
    selection = [dg.AssetKey(["multi", k]) for k in ("raw", "prepared", "scored")]
    with persistent_instance(tmp_path / "dagster_home") as instance:
        result = dg.execute_job(
            job, instance=instance, run_config=MULTIPROCESS_CONFIG, asset_selection=selection, raise_on_error=False
        )
        assert result.success
        assert run_step_events(instance, result.run_id, "STEP_SUCCESS") == {"read", "prepare", "score"}
        workers = run_step_events(instance, result.run_id, "STEP_WORKER_STARTED")
        assert workers == {"read", "prepare", "score"}
    prepare_pids, score_pids = log_lines(project, "prepare"), log_lines(project, "score")
    assert len(prepare_pids) == len(score_pids) == 1
    # two steps, two processes, neither of them this one: data went through the persisted files
    assert prepare_pids[0] != score_pids[0]
    assert str(os.getpid()) not in (prepare_pids + score_pids)
    scored = pd.read_parquet(project.datasets_dir("multi") / "scored" / "data.parquet")
    assert scored["id"].tolist() == HIGH_VALUE_IDS


# ----------------------------------------------------------------------------- atomic writes


def test_a_store_failing_mid_write_leaves_the_previous_target_intact(project: Project) -> None:
    project.sample_csv()
    path = project.pipeline(
        "atomic",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {"layer": "store", "name": "save_csv", "value": "out/items.csv", "inputs": {"data": "raw"}},
            {"layer": "store", "name": "save_json", "value": "out/items.jsonl", "inputs": {"data": "raw"}},
        ],
    )
    defs = build_definitions(path)
    job = defs.resolve_job_def("atomic")
    assert job.execute_in_process(raise_on_error=False).success
    before = {p.name: p.read_bytes() for p in project.path("out").iterdir()}
    assert set(before) == {"items.csv", "items.jsonl"}

    # Replace the persisted dataset with one whose second row group is corrupt: the writers
    # stream the first row group out, then fail half-way through.
    dataset = project.datasets_dir("atomic") / "raw" / "data.parquet"
    big = pa.table(
        {
            "id": list(range(2000)),
            "name": [f"n{i}" for i in range(2000)],
            "value": list(range(2000)),
            "category": ["A"] * 2000,
            "timestamp": ["t"] * 2000,
        }
    )
    pq.write_table(big, dataset, row_group_size=1000, compression="zstd")
    col = pq.ParquetFile(dataset).metadata.row_group(1).column(1)
    with open(dataset, "r+b") as fh:
        fh.seek((col.dictionary_page_offset or col.data_page_offset) + 20)
        fh.write(b"\xff" * 64)

    sinks = [dg.AssetKey(["atomic", "save_csv"]), dg.AssetKey(["atomic", "save_json"])]
    result = job.execute_in_process(asset_selection=sinks, raise_on_error=False)
    assert not result.success
    assert step_events(result, "STEP_FAILURE") == {"save_csv", "save_json"}
    after = {p.name: p.read_bytes() for p in project.path("out").iterdir()}
    assert after == before  # same files, same bytes, no temp files left over


def test_a_failing_database_store_rolls_back(project: Project) -> None:
    db = project.path("shop.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value INTEGER, category TEXT)")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", [(100, "old", 1, "A"), (7, "clash", 2, "B")])
    conn.commit()
    conn.close()
    frame = sample_frame()
    frame.to_csv(project.path("new.csv"), index=False)
    path = project.pipeline(
        "rollback",
        [
            {"layer": "connect", "name": "shop", "value": "sqlite:///shop.db"},
            {"layer": "ingest", "name": "read", "value": "new.csv", "outputs": {"data": "new_items"}},
            # id 7 already exists: the 7th row violates the primary key after six were inserted
            {
                "layer": "store",
                "name": "append",
                "value": "items",
                "params": {"connection": "shop", "mode": "append", "chunksize": 2},
                "inputs": {"data": "new_items"},
            },
        ],
    )
    result = run_pipeline(path, job="rollback")
    assert not result.success
    assert "UNIQUE constraint failed" in failure_message(result, "append")
    assert sorted(sqlite_rows(db, "SELECT id, name FROM items")) == [(7, "clash"), (100, "old")]


def test_a_failing_blocking_check_stops_downstream_steps(project: Project) -> None:
    project.sample_csv()
    path = project.pipeline(
        "checked",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "pick",
                "type": "sql",
                "value": "SELECT *, CASE WHEN value > 100 THEN id END AS high_id FROM data",
                "inputs": {"data": "raw"},
                "outputs": {"data": "picked"},
                "checks": [
                    {"not_null": ["high_id"], "severity": "error"},
                    {"row_count": {"min": 1}},
                    {"accepted_values": {"column": "category", "values": ["A", "B"]}},
                ],
            },
            {"layer": "store", "name": "save", "value": "out/picked.csv", "inputs": {"data": "picked"}},
        ],
    )
    result = run_pipeline(path, job="checked")
    assert not result.success
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert {k: v.passed for k, v in evaluations.items()} == {
        "not_null__high_id": False,
        "row_count": True,
        "accepted_values__category": False,
    }
    assert evaluations["not_null__high_id"].metadata["failing_rows"].value == 4
    assert step_events(result, "STEP_FAILURE") == {"pick"}
    assert "save" not in step_events(result, "STEP_START")
    assert not project.path("out/picked.csv").exists()
