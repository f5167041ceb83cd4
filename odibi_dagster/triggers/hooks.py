"""ODIBI's pipeline events (``pipeline_start``, ``pipeline_complete``, ``pipeline_error``) as
Dagster run-status sensors that call the functions named in ``hooks:``.

Node events come from the steps themselves (``translate.events.emit``); pipeline events
need the run as a whole, which is what run-status sensors see. They fire for runs of the
pipeline's job and for any other run of the code location that materializes the
pipeline's assets (e.g. "Materialize" in the asset graph).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from odibi_dagster.observe import events
from odibi_dagster.plan import PipelinePlan

#: How often the run-status sensors look for finished runs (Dagster's default is 30s): hooks
#: fire within about this long of the run's status change.
HOOK_SENSOR_INTERVAL = 15

#: ODIBI event -> the run status that fires it.
PIPELINE_EVENTS: dict[str, dg.DagsterRunStatus] = {
    "pipeline_start": dg.DagsterRunStatus.STARTED,
    "pipeline_complete": dg.DagsterRunStatus.SUCCESS,
    "pipeline_error": dg.DagsterRunStatus.FAILURE,
}


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat() if ts else None


def is_pipeline_run(plan: PipelinePlan, run: dg.DagsterRun) -> bool:
    """Whether ``run`` runs (part of) ``plan``'s pipeline."""
    if run.job_name == plan.job_name:
        return True
    keys = {*plan.asset_keys.values(), *plan.sink_keys.values()}
    return bool(run.asset_selection and keys & set(run.asset_selection))


def event_data(
    plan: PipelinePlan,
    event: str,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    failure_message: str | None = None,
) -> dict[str, Any]:
    """ODIBI's event data for ``event`` of ``run``: ``start_time`` for pipeline_start;
    ``success_count``, ``failed_count``, ``duration_ms`` for pipeline_complete and
    pipeline_error, which also carries ``error_message``."""
    from odibi_dagster.observe.run_summary import summarize_run

    record = instance.get_run_record_by_id(run.run_id)
    start_ts = record.start_time if record is not None else None
    data: dict[str, Any] = {"run_id": run.run_id, "job_name": run.job_name}
    if "dagster/partition" in run.tags:
        data["partition_key"] = run.tags["dagster/partition"]
    if event == "pipeline_start":
        data["start_time"] = _iso(start_ts) or dt.datetime.now(dt.UTC).isoformat()
        return data
    steps = summarize_run(instance, run.run_id, plan.steps_by_op)
    end_ts = record.end_time if record is not None else None
    data.update(
        start_time=_iso(start_ts),
        success_count=sum(s["status"] == "success" for s in steps),
        failed_count=sum(s["status"] == "failed" for s in steps),
        duration_ms=round((end_ts - start_ts) * 1000, 3) if start_ts and end_ts else None,
    )
    if event == "pipeline_error":
        failed = [s for s in steps if s["status"] == "failed"]
        data["error_message"] = (
            f"step '{failed[0]['step']}': {failed[0]['error']}" if failed else failure_message or "run failed"
        )
    return data


def build_hook_sensors(plan: PipelinePlan, job: Any) -> list[dg.SensorDefinition]:
    """One run-status sensor per pipeline event that has hooks (none when there are no hooks)."""
    wanted = {h.event for h in plan.pipeline.hooks}
    return [_event_sensor(plan, event, status) for event, status in PIPELINE_EVENTS.items() if event in wanted]


def _event_sensor(plan: PipelinePlan, event: str, status: dg.DagsterRunStatus) -> dg.SensorDefinition:
    functions = ", ".join(h.function for h in plan.pipeline.hooks if h.event == event)

    @dg.run_status_sensor(
        run_status=status,
        name=f"{plan.job_name}__on_{event}",
        minimum_interval_seconds=HOOK_SENSOR_INTERVAL,
        # No monitored_jobs: the whole code location, so "Materialize" runs of the pipeline's
        # assets (the implicit asset job) fire the pipeline's hooks too; is_pipeline_run filters.
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Calls the {event} hooks of {plan.name} ({functions})",
    )
    def _on_status(context: dg.RunStatusSensorContext) -> None:
        run = context.dagster_run
        if not is_pipeline_run(plan, run):
            return
        # Run-status sensors deliver at least once: a daemon stopped after a tick ran but before
        # its cursor was saved sees the same runs again. A tag on the run makes delivery once.
        delivered_tag = f"odibi/delivered_{event}"
        current = context.instance.get_run_by_id(run.run_id)
        if current is not None and current.tags.get(delivered_tag):
            return
        context.instance.add_run_tags(run.run_id, {delivered_tag: "true"})
        message = context.dagster_event.message if context.dagster_event is not None else None
        data = event_data(plan, event, context.instance, run, failure_message=message)
        errors = events.deliver(plan.pipeline, event, data, log=context.log.warning)
        if not errors:
            context.log.info(f"odibi: delivered {event} of run {run.run_id} to the hooks of {plan.name}")

    return _on_status
