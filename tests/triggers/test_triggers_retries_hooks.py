"""Retries from the config (a step failing once then succeeding shows both attempts) and
pipeline events delivered to ``hooks:`` by run-status sensors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from triggers_support import build, event_types, write_csv, write_yaml

from odibi_dagster.triggers.hooks import PIPELINE_EVENTS

FLAKY = '''
from pathlib import Path


def fail_once(data, marker):
    """Fails the first time it is called (per marker file), then passes its input through."""
    p = Path(marker)
    if not p.exists():
        p.write_text("failed once")
        raise RuntimeError("transient failure, try again")
    return data


def always_fail(data):
    raise ValueError("the source is broken")
'''

HOOKS = """
import json
import os


def record(event):
    # The file comes from the environment: the module is imported once per test session.
    with open(os.environ["ODIBI_TEST_EVENTS"], "a") as fh:
        fh.write(json.dumps(event) + "\\n")


def broken(event):
    raise RuntimeError("hook bug")
"""


def project_with(
    root: Path,
    *,
    retry: dict | None = None,
    step_retry: dict | None = None,
    hooks: list[dict] | None = None,
    fn: str = "fail_once",
    name: str = "flaky",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "flaky_fns.py").write_text(textwrap.dedent(FLAKY))
    (root / "odibi_hooks.py").write_text(textwrap.dedent(HOOKS))
    write_csv(root / "data" / "in.csv", ["id"], [[1], [2]])
    step: dict[str, Any] = {
        "layer": "transform",
        "name": "flaky_step",
        "type": "function",
        "value": f"flaky_fns.{fn}",
        "inputs": {"data": "raw"},
        "outputs": {"data": "out"},
    }
    if fn == "fail_once":
        step["params"] = {"marker": str(root / "marker")}
    if step_retry is not None:
        step["retry"] = step_retry
    doc: dict[str, Any] = {"pipeline": name, "story": {"enabled": False}}
    if retry is not None:
        doc["retry"] = retry
    if hooks is not None:
        doc["hooks"] = hooks
    doc["steps"] = [
        {"layer": "ingest", "name": "ingest", "value": "data/in.csv", "outputs": {"data": "raw"}},
        step,
    ]
    return write_yaml(root / f"{name}.yaml", doc)


def op_retry(defs: dg.Definitions, step: str) -> dg.RetryPolicy | None:
    assets_def = next(a for a in defs.assets if a.node_def.name.endswith(f"__{step}"))
    return assets_def.node_def.retry_policy


def test_retry_policy_from_pipeline_and_step(project: Path) -> None:
    defs = build(
        project_with(
            project,
            retry={"max_retries": 2, "delay_seconds": 5},
            step_retry={
                "max_retries": 4,
                "delay_seconds": 1.5,
                "backoff": "exponential",
                "jitter": "plus_minus",
            },
        )
    )
    assert op_retry(defs, "ingest") == dg.RetryPolicy(max_retries=2, delay=5)
    assert op_retry(defs, "flaky_step") == dg.RetryPolicy(
        max_retries=4, delay=1.5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )
    none = build(project_with(project / "b", retry={"max_retries": 0}))
    assert op_retry(none, "ingest") is None


def test_a_step_that_fails_then_succeeds_on_retry_shows_both_attempts(
    project: Path, instance: dg.DagsterInstance
) -> None:
    defs = build(project_with(project, retry={"max_retries": 2, "delay_seconds": 0.1}))
    result = defs.resolve_job_def("flaky").execute_in_process(instance=instance)
    assert result.success
    step_events = [
        (r.dagster_event.event_type_value, r.dagster_event.step_key)
        for r in instance.all_logs(result.run_id)
        if r.dagster_event is not None and r.dagster_event.step_key == "flaky__flaky_step"
    ]
    kinds = [k for k, _ in step_events]
    assert kinds.count("STEP_START") == 1 and kinds.count("STEP_RESTARTED") == 1
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds.count("STEP_SUCCESS") == 1
    assert kinds.index("STEP_UP_FOR_RETRY") < kinds.index("STEP_RESTARTED") < kinds.index("STEP_SUCCESS")
    retry = next(
        r
        for r in instance.all_logs(result.run_id)
        if r.dagster_event is not None and r.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
    )
    assert "transient failure, try again" in str(retry.dagster_event.event_specific_data.error)
    assert "STEP_FAILURE" not in event_types(instance, result.run_id)


def test_without_retries_the_failure_is_final(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(project_with(project))
    result = defs.resolve_job_def("flaky").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in event_types(instance, result.run_id)


ALL_HOOKS = [{"event": e, "function": "odibi_hooks.record"} for e in PIPELINE_EVENTS]


def test_hook_sensors_only_for_configured_pipeline_events(project: Path) -> None:
    assert not list(build(project_with(project / "a")).sensors or [])
    only = build(
        project_with(
            project / "b",
            hooks=[
                {"event": "pipeline_complete", "function": "odibi_hooks.record"},
                {"event": "node_complete", "function": "odibi_hooks.record"},
            ],
        )
    )
    assert [s.name for s in only.sensors] == ["flaky__on_pipeline_complete"]
    every = build(project_with(project / "c", hooks=ALL_HOOKS))
    sensors = {s.name: s for s in every.sensors}
    assert set(sensors) == {f"flaky__on_{e}" for e in PIPELINE_EVENTS}
    for sensor in sensors.values():
        assert isinstance(sensor, dg.RunStatusSensorDefinition)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def _fire(defs: dg.Definitions, event: str, instance: dg.DagsterInstance, run_id: str) -> None:
    """Evaluate the run-status sensor of ``event`` on a finished run, as the daemon does."""
    kind = {
        "pipeline_start": dg.DagsterEventType.RUN_START,
        "pipeline_complete": dg.DagsterEventType.RUN_SUCCESS,
        "pipeline_error": dg.DagsterEventType.RUN_FAILURE,
    }[event]
    record = instance.all_logs(run_id, of_type=kind)[0]
    run = instance.get_run_by_id(run_id)
    sensor = defs.resolve_sensor_def(f"flaky__on_{event}")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=record.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
    )
    sensor(context)


@pytest.fixture(autouse=True)
def _events_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_TEST_EVENTS", str(project / "events.jsonl"))


def _events(root: Path) -> list[dict[str, Any]]:
    path = root / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_pipeline_events_reach_the_hooks_with_odibi_event_data(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(project_with(project, retry={"max_retries": 1}, hooks=ALL_HOOKS))
    result = defs.resolve_job_def("flaky").execute_in_process(instance=instance)
    assert result.success
    _fire(defs, "pipeline_start", instance, result.run_id)
    _fire(defs, "pipeline_complete", instance, result.run_id)
    start, complete = _events(project)
    assert start["event"] == "pipeline_start" and start["pipeline_name"] == "flaky"
    assert start["run_id"] == result.run_id and start["start_time"].startswith("20")
    assert complete["event"] == "pipeline_complete"
    assert (complete["success_count"], complete["failed_count"]) == (2, 0)
    assert complete["duration_ms"] > 0


def test_pipeline_error_carries_the_failed_step_and_message(project: Path, instance: dg.DagsterInstance) -> None:
    defs = build(project_with(project, fn="always_fail", hooks=ALL_HOOKS))
    result = defs.resolve_job_def("flaky").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    _fire(defs, "pipeline_error", instance, result.run_id)
    (error,) = _events(project)
    assert error["event"] == "pipeline_error" and error["failed_count"] == 1 and error["success_count"] == 1
    assert "flaky_step" in error["error_message"] and "the source is broken" in error["error_message"]


def test_materialize_runs_of_the_pipeline_assets_fire_the_hooks_too(
    project: Path, instance: dg.DagsterInstance
) -> None:
    other = write_yaml(
        project / "other.yaml",
        {
            "pipeline": "other",
            "steps": [{"layer": "ingest", "name": "ingest", "value": "data/in.csv", "outputs": {"data": "o"}}],
        },
    )
    defs = build(
        project_with(
            project,
            retry={"max_retries": 1},
            hooks=[
                {"event": "pipeline_complete", "function": "odibi_hooks.record"},
                {"event": "pipeline_complete", "function": "odibi_hooks.broken", "priority": "high"},
            ],
        ),
        other,
    )
    implicit = defs.resolve_implicit_global_asset_job_def()
    mine = implicit.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["flaky", "raw"])])
    theirs = implicit.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["other", "o"])])
    _fire(defs, "pipeline_complete", instance, mine.run_id)
    _fire(defs, "pipeline_complete", instance, theirs.run_id)  # not this pipeline's run: ignored
    (event,) = _events(project)  # the broken hook raised first and did not stop the others
    assert event["run_id"] == mine.run_id and event["success_count"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"event": "pipeline_done", "function": "odibi_hooks.record"},
        {"event": "pipeline_start", "function": "odibi_hooks.missing"},
    ],
)
def test_bad_hooks_fail_validation(project: Path, bad: dict[str, str]) -> None:
    from odibi_dagster.config.errors import ConfigValidationError

    with pytest.raises(ConfigValidationError, match="hooks"):
        build(project_with(project, hooks=[bad]))


def test_backoff_or_jitter_without_a_delay_is_a_validation_error(project: Path) -> None:
    from odibi_dagster.config.errors import ConfigValidationError

    with pytest.raises(ConfigValidationError, match="backoff needs a delay"):
        build(project_with(project, retry={"max_retries": 2, "backoff": "exponential"}))
    defs = build(project_with(project / "ok", retry={"max_retries": 2, "delay_seconds": 1, "backoff": "linear"}))
    assert op_retry(defs, "ingest") == dg.RetryPolicy(max_retries=2, delay=1, backoff=dg.Backoff.LINEAR)
