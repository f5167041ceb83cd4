"""When a run publishes its tracker JSON and story: at the first step, when the last step
ends, on failures (inside a step's body, or after it: an input that cannot load, a failing
blocking check), and at most
every ``story.refresh_seconds`` in between, so long pipelines stay linear."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from translate_support import MULTIPROCESS_CONFIG, Project, persistent_instance, reconstructable_job

from odibi_dagster import build_definitions
from odibi_dagster.observe.tracker import RunTracker


def _chain(n: int) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "d0"}}
    ]
    for i in range(1, n):
        steps.append(
            {
                "layer": "transform",
                "name": f"t{i}",
                "type": "sql",
                "value": f"SELECT * FROM d{i - 1}",
                "inputs": {f"d{i - 1}": f"d{i - 1}"},
                "outputs": {"data": f"d{i}"},
            }
        )
    return steps


@pytest.fixture
def publishes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Every publish of this process, as the step statuses it wrote."""
    seen: list[dict[str, str]] = []
    original = RunTracker.publish

    def spy(self: RunTracker, *args: Any, **kwargs: Any) -> dict[str, Any]:
        lineage = original(self, *args, **kwargs)
        seen.append({s["step_name"]: s["status"] for s in lineage["steps"]})
        return lineage

    monkeypatch.setattr(RunTracker, "publish", spy)
    return seen


def _run(path: Path, job: str) -> dg.ExecuteInProcessResult:
    defs = build_definitions(path)
    return defs.resolve_job_def(job).execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def _lineage(project: Project, pipeline: str, run_id: str) -> dict[str, Any]:
    return json.loads((project.root / ".odibi" / "stories" / pipeline / run_id / "tracker.json").read_text())


def _final(project: Project, pipeline: str, run_id: str) -> tuple[dict[str, str], str]:
    """Step statuses in the run's tracker.json, and its story HTML."""
    story = (project.root / ".odibi" / "stories" / pipeline / run_id / "story.html").read_text()
    return {s["step_name"]: s["status"] for s in _lineage(project, pipeline, run_id)["steps"]}, story


def test_a_long_run_publishes_at_its_first_step_and_when_its_last_step_ends(
    project: Project, publishes: list[dict[str, str]]
) -> None:
    project.sample_csv()
    path = project.pipeline("longrun", _chain(12), story={"refresh_seconds": 3600})
    result = _run(path, "longrun")
    assert result.success
    # 24 step starts and ends, two publishes: the first start and the last end
    assert len(publishes) == 2
    assert publishes[0] == {"read": "running"}
    statuses, story = _final(project, "longrun", result.run_id)
    assert statuses == {"read": "success", **{f"t{i}": "success" for i in range(1, 12)}}
    assert publishes[-1] == statuses
    assert all(f">t{i}<" in story for i in range(1, 12)), "every step is in the story"


def test_refresh_seconds_zero_publishes_at_every_step_start_and_end(
    project: Project, publishes: list[dict[str, str]]
) -> None:
    project.sample_csv()
    path = project.pipeline("eager", _chain(3), story={"refresh_seconds": 0})
    assert _run(path, "eager").success
    assert len(publishes) == 6
    assert publishes[1] == {"read": "success"} and publishes[2] == {"read": "success", "t1": "running"}


def test_a_failed_step_publishes_and_the_other_branch_ends_the_run(
    project: Project, publishes: list[dict[str, str]]
) -> None:
    project.sample_csv()
    steps = [
        {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
        {
            "layer": "transform",
            "name": "broken",
            "type": "sql",
            "value": "SELECT no_such_column FROM raw",
            "inputs": {"raw": "raw"},
            "outputs": {"data": "bad"},
        },
        {
            "layer": "transform",
            "name": "after_broken",
            "type": "sql",
            "value": "SELECT * FROM bad",
            "inputs": {"bad": "bad"},
            "outputs": {"data": "worse"},
        },
        {
            "layer": "transform",
            "name": "fine",
            "type": "sql",
            "value": "SELECT * FROM raw",
            "inputs": {"raw": "raw"},
            "outputs": {"data": "good"},
        },
    ]
    path = project.pipeline("branches", steps, story={"refresh_seconds": 3600})
    result = _run(path, "branches")
    assert not result.success
    statuses, _ = _final(project, "branches", result.run_id)
    # after_broken never runs (its upstream failed), so the run ended with the last of the others
    assert statuses == {"read": "success", "broken": "failed", "fine": "success"}
    assert publishes[-1] == statuses
    assert len(publishes) <= 3  # first start, the failure, the end


def test_a_failing_blocking_check_is_recorded_and_published(project: Project, publishes: list[dict[str, str]]) -> None:
    project.sample_csv()
    steps = [
        {
            "layer": "ingest",
            "name": "read",
            "value": "data/sample.csv",
            "outputs": {"data": "raw"},
            "checks": [{"row_count": {"min": 1000000}, "severity": "error"}],
        },
        {
            "layer": "transform",
            "name": "next",
            "type": "sql",
            "value": "SELECT * FROM raw",
            "inputs": {"raw": "raw"},
            "outputs": {"data": "clean"},
        },
        {"layer": "ingest", "name": "other", "value": "data/sample.csv", "outputs": {"data": "other"}},
    ]
    path = project.pipeline("blocked", steps, story={"refresh_seconds": 3600})
    result = _run(path, "blocked")
    assert not result.success
    # The body of 'read' ended well, then Dagster failed the step on its check and skipped
    # 'next'. The step records that, so the run also ends when 'other' ends, whatever the order.
    statuses, story = _final(project, "blocked", result.run_id)
    assert statuses == {"read": "failed", "other": "success"}
    assert publishes[-1] == statuses
    read = next(s for s in _lineage(project, "blocked", result.run_id)["steps"] if s["step_name"] == "read")
    assert "blocking asset check failed" in read["error_message"]
    assert read["after_snapshot"]["row_count"] > 0  # what the body did stays on record
    assert "blocking asset check failed" in story


def test_an_input_that_cannot_load_is_recorded_and_published(project: Project, publishes: list[dict[str, str]]) -> None:
    project.sample_csv()
    path = project.pipeline("unloaded", _chain(2), story={"refresh_seconds": 3600})
    defs = build_definitions(path)
    # Only the transform, whose input was never materialized: it fails before its body runs.
    result = defs.resolve_job_def("unloaded").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), asset_selection=[dg.AssetKey(["unloaded", "d1"])], raise_on_error=False
    )
    assert not result.success
    statuses, story = _final(project, "unloaded", result.run_id)
    assert statuses == {"t1": "failed"}
    assert publishes == [statuses]
    assert "materialize it first" in story


def test_steps_in_their_own_processes_leave_a_complete_story(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_job_env: None
) -> None:
    project.sample_csv()
    path = project.pipeline("procs", _chain(3), story={"refresh_seconds": 3600})
    job = reconstructable_job(monkeypatch, path, "procs")
    with persistent_instance(tmp_path / "dagster_home") as instance:
        result = dg.execute_job(job, instance=instance, run_config=MULTIPROCESS_CONFIG, raise_on_error=False)
        assert result.success
        run_id = result.run_id
    statuses, story = _final(project, "procs", run_id)
    assert statuses == {"read": "success", "t1": "success", "t2": "success"}
    assert ">t2<" in story
    assert len(pd.read_parquet(project.datasets_dir("procs") / "d2" / "data.parquet")) > 0


def test_a_failure_outside_the_body_is_recorded_with_credentials_masked(project: Project) -> None:
    from odibi_dagster.translate.definitions import build_plans, load_configs
    from odibi_dagster.translate.runtime import record_failure
    from odibi_dagster.translate.translator import OdibiTranslator

    project.sample_csv()
    path = project.pipeline("masked", _chain(2))
    plan = build_plans(load_configs([path]), OdibiTranslator(), (), None)[0]
    record_failure(plan, "run-1", "t1", "RuntimeError: cannot reach postgresql://etl:s3cr3t-pw@db.internal:5432/sales")
    statuses, story = _final(project, "masked", "run-1")
    assert statuses == {"t1": "failed"}
    message = _lineage(project, "masked", "run-1")["steps"][0]["error_message"]
    assert "RuntimeError: cannot reach postgresql://" in message and "s3cr3t-pw" not in message
    assert "s3cr3t-pw" not in story


def test_a_successful_run_logs_no_hook_events_and_no_warnings(project: Project) -> None:
    import logging

    project.sample_csv()
    path = project.pipeline("quiet", _chain(3))
    instance = dg.DagsterInstance.ephemeral()
    result = build_definitions(path).resolve_job_def("quiet").execute_in_process(instance=instance)
    assert result.success
    entries = instance.all_logs(result.run_id)
    hooks = [
        e.dagster_event.event_type_value
        for e in entries
        if e.dagster_event is not None and e.dagster_event.event_type_value.startswith("HOOK_")
    ]
    assert hooks == []
    warnings = [e.user_message for e in entries if e.level >= logging.WARNING]
    assert warnings == []
    assert len([e for e in entries if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"]) == 3
