"""Support for ``odibi-dagster run``: definitions with a progress logger, a reconstructable
job for the multiprocess executor, and a per-step summary read from the event log."""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

import dagster as dg

from odibi_dagster.observe.run_summary import headline
from odibi_dagster.plan import PipelinePlan

PATHS_ENV = "ODIBI_CLI_PATHS"
JOB_ENV = "ODIBI_CLI_JOB"
SESSION_TAG = "odibi/cli_invocation"  # one value per `odibi-dagster run`: finds its runs after an interrupt
PID_TAG = "odibi/cli_pid"
HOST_TAG = "odibi/cli_host"
EXECUTOR_ENV = "ODIBI_CLI_EXECUTOR"  # --executor, when given: replaces the pipelines' own setting
# Loggers are only used when the run config names them: the CLI shows progress lines instead
# of Dagster's debug console.
RUN_CONFIG = {"loggers": {"odibi_progress": {}}}


@dg.logger(description="One line per finished step: name, rows, time")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.getLogger(f"odibi_progress_{os.getpid()}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if not log.handlers:
        log.addHandler(_ProgressHandler())
    return log


class _ProgressHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self.assets: dict[str, dict[str, int]] = {}
        self.cached: dict[str, bool] = {}  # step -> every materialization so far reused (--changed-only)

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is None:
            return
        step = event.step_key or ""
        name = _display_name(step)
        kind = event.event_type_value
        if kind == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            hit = "odibi/cache" in materialization.metadata
            self.cached[step] = self.cached.get(step, True) and hit
            rows = materialization.metadata.get("dagster/row_count")
            if rows is not None:
                # The step's largest dataset; a range run adds up its partitions.
                per_asset = self.assets.setdefault(step, {})
                key = materialization.asset_key.to_user_string()
                per_asset[key] = per_asset.get(key, 0) + int(rows.value)
                self.rows[step] = max(per_asset.values())
        elif kind == "STEP_SUCCESS":
            ms = event.event_specific_data.duration_ms or 0
            rows = self.rows.get(step)
            shown = f"{rows} rows" if rows is not None else ""
            if self.cached.get(step):  # reused by a --changed-only run: its inputs came out unchanged
                print(f"  cached {name:<31} {shown:>14}    (inputs unchanged)", flush=True)
            else:
                print(f"  ok    {name:<32} {shown:>14} {ms:>9.0f} ms", flush=True)
        elif kind == "STEP_FAILURE":
            err = event.event_specific_data.error
            while err is not None and err.cause is not None:  # show the step's own error, not the retry wrapper
                err = err.cause
            interrupted = err is not None and err.cls_name == "DagsterExecutionInterruptedError"
            message = "interrupted (SIGINT/SIGTERM)" if interrupted else headline(err.message if err else "")
            print(f"  FAIL  {name:<32} {message}", flush=True)
        elif kind == "STEP_UP_FOR_RETRY":
            print(f"  retry {name}", flush=True)
        elif kind == "STEP_SKIPPED":
            print(f"  skip  {name:<32} (upstream failed)", flush=True)


@cache
def _step_names() -> dict[str, str]:
    """Op name -> step name, for the CLI's pipelines."""
    return {plan.op_name(step): step.name for plan in _plans().values() for step in plan.pipeline.steps}


def _display_name(op_name: str) -> str:
    """The step's own name for a progress line, with control and bidi characters escaped."""
    name = _step_names().get(op_name, op_name) if PATHS_ENV in os.environ else op_name
    return "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf") else ch.encode("unicode_escape").decode() for ch in name
    )


@cache
def cli_definitions() -> dg.Definitions:
    """Definitions of the CLI's configs (from the environment, so child processes rebuild them)."""
    from odibi_dagster.config.models import ExecutorConfig
    from odibi_dagster.translate.definitions import definitions_from_plans
    from odibi_dagster.translate.executors import executor_for
    from odibi_dagster.translate.translator import OdibiTranslator

    # The plans (validated once) are shared with the rest of the CLI.
    plans = list(_plans().values())
    override = os.environ.get(EXECUTOR_ENV)
    executor = executor_for(ExecutorConfig(type=override), plans) if override else None  # type: ignore[arg-type]
    defs = definitions_from_plans(plans, OdibiTranslator(), (), executor=executor)
    return dg.Definitions.merge(defs, dg.Definitions(loggers={"odibi_progress": progress_logger}))


def reconstruct_job() -> dg.JobDefinition:
    """Zero-argument job factory for ``dg.reconstructable`` (multiprocess runs)."""
    return cli_definitions().resolve_job_def(os.environ[JOB_ENV])


def pipeline_jobs() -> list[str]:
    """The job names of the CLI's pipelines."""
    return sorted(_plans())


@cache
def _plans() -> dict[str, PipelinePlan]:
    from odibi_dagster.translate.definitions import build_plans, load_configs, plans_for_step_process
    from odibi_dagster.translate.translator import OdibiTranslator

    paths = json.loads(os.environ[PATHS_ENV])
    plans = plans_for_step_process(paths) or build_plans(load_configs(paths), OdibiTranslator(), (), None)
    return {p.job_name: p for p in plans}


def plan_for(job_name: str) -> PipelinePlan:
    return _plans()[job_name]


def describe_partitions(plan: PipelinePlan, job: dg.JobDefinition, instance: dg.DagsterInstance) -> str:
    """Why ``run`` needs ``--partition`` for ``plan``, naming its partitions and how to pass one."""
    cfg = plan.pipeline.partitions
    assert cfg is not None and job.partitions_def is not None
    if cfg.type == "static":
        what = f"static partitions ({', '.join(cfg.values or [])})"
    elif cfg.type == "dynamic":
        what = f"dynamic partitions '{cfg.name or plan.job_name}'"
    else:
        what = f"{cfg.type} partitions from {cfg.start}" + (f" to {cfg.end}" if cfg.end else "") + f" ({cfg.timezone})"
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        keys = list(job.partitions_def.get_partition_keys())
    if keys:
        first, last = keys[max(len(keys) - 7, 0)], keys[-1]
        how = f"--partition {last} for one, or --partition {first}...{last} for a range"
    else:
        how = "--partition KEY for one, or --partition START...END for a range (none exist yet)"
    return f"pipeline '{plan.name}' is partitioned ({what}); choose what to run with {how}"


def selection_for(defs: dg.Definitions, job_name: str, select: str | None) -> list[dg.AssetKey] | None:
    """Asset keys of the selected steps (None = the whole pipeline)."""
    if not select:
        return None
    plan = plan_for(job_name)
    by_step: dict[str, list[dg.AssetKey]] = {}
    for step in plan.pipeline.steps:
        keys = [plan.asset_keys[d] for d in step.outputs.values()] if step.outputs else []
        if step.name in plan.sink_keys:
            keys.append(plan.sink_keys[step.name])
        by_step[step.name] = keys
    chosen: list[dg.AssetKey] = []
    for name in [s.strip() for s in select.split(",") if s.strip()]:
        if name not in by_step:
            raise KeyError(f"--select: no step named '{name}' in pipeline '{plan.name}'")
        chosen += by_step[name]
    return chosen


@dataclass
class PlannedRun:
    """One Dagster run ``run`` starts: its tags and asset selection (``None``: the whole job), and
    for ``--changed-only`` what Dagster found changed (``translate.changed_only.ChangedRun``)."""

    tags: dict[str, str]
    selection: list[dg.AssetKey] | None
    change: Any = None

    def plan_note(self) -> str:
        """What a ``--changed-only`` run will do, for its first progress line."""
        if self.change is None:
            return ""
        stale, run = len(self.change.stale_steps), len(self.change.run_steps)
        after = ""
        if run > stale:
            after = f", {run - stale} downstream of them (each reused if its inputs come out unchanged)"
        return f": {stale} step(s) stale or missing{after}, {self.cached_note()}"

    def cached_note(self) -> str:
        return f"{len(self.change.fresh)} step(s) fresh (cached)"


def planned_runs(
    defs: dg.Definitions,
    job: dg.JobDefinition,
    plan: PipelinePlan,
    instance: dg.DagsterInstance,
    tag_sets: list[dict[str, str]],
    selection: list[dg.AssetKey] | None,
    changed_only: bool,
) -> list[PlannedRun]:
    """The runs of one pipeline: one per tag set; with ``changed_only``, only what Dagster calls
    stale or missing and its downstream (a run with nothing to do has an empty selection).

    On a persistent instance the sources are observed first, so each ingest records the
    version of the files it reads.
    """
    from odibi_dagster.translate.changed_only import changed_runs, run_partitions
    from odibi_dagster.translate.sources import observe_sources

    if changed_only:
        changes = changed_runs(defs, job, plan, instance, tag_sets, selection)
        return [PlannedRun(c.tags, c.selection, c) for c in changes]
    if plan.source_keys and instance.is_persistent:
        wanted = sorted({k for t in tag_sets for k in run_partitions(job, t, instance) if k is not None})
        observe_sources(plan, instance, wanted or None)
    return [PlannedRun(tags, selection) for tags in tag_sets]


def record_cached(plan: PipelinePlan, instance: dg.DagsterInstance, run_id: str, run: PlannedRun) -> list[str]:
    """After a ``--changed-only`` run: the ``cached`` records of the steps it did not select."""
    if run.change is None:
        return []
    from odibi_dagster.translate.changed_only import record_cached_steps

    return record_cached_steps(plan, instance, run_id, run.change)


def planned_steps(plan: PipelinePlan, select: str | None) -> list[str]:
    """The steps a run was asked to execute (connect steps are resources, not steps)."""
    chosen = {s.strip() for s in select.split(",")} if select else None
    return [s.name for s in plan.pipeline.steps if s.layer != "connect" and (chosen is None or s.name in chosen)]


def run_tag_sets(
    job: dg.JobDefinition, plan: PipelinePlan, partition: str | None, instance: dg.DagsterInstance
) -> list[dict[str, str]]:
    """Run tags of each run for ``--partition`` (a key, or ``START...END`` split by the backfill policy).

    Raises ``ValueError`` naming a key that is not a partition of the pipeline.
    """
    from odibi_dagster.triggers.backfill import PARTITION_TAG, backfill_run_tags

    if partition is None:
        return [{}]
    pdef = job.partitions_def
    if pdef is None:
        raise ValueError("--partition given but the pipeline has no partitions")
    if "..." in partition:
        start, end = partition.split("...", 1)
        return backfill_run_tags(pdef, plan.pipeline.backfill, start, end, instance)
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        if not pdef.has_partition_key(partition):
            raise ValueError(f"'{partition}' is not a partition of this pipeline")
    return [{PARTITION_TAG: partition}]


def pipeline_event(plan: PipelinePlan, event: str, data: dict[str, Any]) -> None:
    from odibi_dagster.observe.events import deliver

    deliver(plan.pipeline, event, data)


# A run in one of these has not ended (QUEUED runs are the daemon's, not a CLI process's).
_UNFINISHED = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def cancel_unfinished_runs(instance: dg.DagsterInstance, session: dict[str, str], signal_name: str) -> list[str]:
    """Mark the runs of one ``odibi-dagster run`` invocation that have not ended CANCELED."""
    unfinished = dg.RunsFilter(tags=session, statuses=[*_UNFINISHED, dg.DagsterRunStatus.QUEUED])
    ids = []
    for run in instance.get_runs(filters=unfinished):
        instance.report_run_canceled(run, message=f"odibi-dagster run was interrupted by {signal_name}")
        ids.append(run.run_id)
    return ids


def cli_run_tags(session: str) -> dict[str, str]:
    """Tags of every run ``odibi-dagster run`` starts: its invocation, host and pid, so a later
    invocation can tell a run whose process was killed from one still running."""
    import socket

    return {SESSION_TAG: session, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILURE the runs an ``odibi-dagster run`` on this host left unfinished when it was
    killed (SIGKILL, OOM): Dagster's run monitoring cannot check runs no launcher started."""
    import socket

    from odibi_dagster.engines.paths import pid_alive

    unfinished = dg.RunsFilter(tags={HOST_TAG: socket.gethostname()}, statuses=list(_UNFINISHED))
    failed = []
    for run in instance.get_runs(filters=unfinished):
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            instance.report_run_failed(
                run,
                message=f"the odibi-dagster run process (pid {pid}) that ran this "
                "run was killed; marked failed by a later odibi-dagster run",
            )
            failed.append(run.run_id)
    return failed


def story_for(plan: PipelinePlan, run_id: str) -> str | None:
    """The path (or blob URL) of a run's story, ``None`` when it has none."""
    from odibi_dagster.engines import paths
    from odibi_dagster.observe.tracker import RunTracker

    path = str(RunTracker(plan.stories_dir, plan.name, run_id).story_path)
    return path if paths.exists(path) else None
