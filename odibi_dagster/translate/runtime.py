"""What happens inside an odibi asset when Dagster runs it (ODIBI's Node.run): one step's execution.

:class:`StepExecution` is one execution of one step for one partition: its template variables,
rendered value and params (secrets resolved, connections expanded), and :meth:`StepExecution.tracked`,
the tracker record, ODIBI node events and the run's story around the step's work. The work itself
is in ``data_steps`` (ingest/transform: compute, persist, materialization metadata) and
``sink_steps`` (store/publish: write the target); ``api_ingest`` reads ODIBI's ``type: api`` sources.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dagster as dg

from odibi_dagster.config.models import Step
from odibi_dagster.config.sql import dialect_for
from odibi_dagster.config.templating import EnvNamespace, render_params, render_sql, render_text
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import DatasetRef, Snapshot
from odibi_dagster.engines.secrets import SecretNotFoundError, SecretResolver
from odibi_dagster.engines.source_ref import SourceChangedError, verified_manifest
from odibi_dagster.observe import events
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
from odibi_dagster.observe.redact import Redactor, redact_url
from odibi_dagster.observe.story.generator import StoryGenerator
from odibi_dagster.observe.tracker import RunTracker
from odibi_dagster.plan import SPARK_ENGINE_KEY, PipelinePlan


class StepRunConfig(dg.Config):
    """Run config of a step. ``source`` overrides an ingest step's value (file-watch sensors set it);
    ``watermark_start`` / ``watermark_end`` are the range a polling sensor's run reads (template
    variables of the same names)."""

    source: str | None = None
    watermark_start: Any = None
    watermark_end: Any = None


# Steps known to have ended, per run folder: a step that ended stays ended (a retry starts it
# again and drops it here), so deciding whether a run has steps left reads few step files.
_TERMINAL: dict[str, dict[str, str]] = {}
# Seconds the last publish of a run folder took in this process (see StepExecution._publish_due).
_PUBLISH_COST: dict[str, dict[str, float]] = {}
# A run publishes again no sooner than this many times its last publish's duration: a publish
# merges every step file and renders the whole story, so with a fixed interval its share of a
# run grew with the run's length (300 tiny steps: a third of the run). This keeps it under ~4%.
PUBLISH_COST_FACTOR = 25.0


def _per_run(table: dict[str, Any], tracker: RunTracker, default: Any) -> Any:
    key = str(tracker.run_dir)
    if key not in table and len(table) >= 64:  # long-lived processes run many runs
        table.pop(next(iter(table)))
    return table.setdefault(key, default)


def _terminal(tracker: RunTracker) -> dict[str, str]:
    return _per_run(_TERMINAL, tracker, {})


def publish_story(plan: PipelinePlan, tracker: RunTracker) -> None:
    """Write the run's tracker JSON, its story (unless disabled) and metrics (when enabled)."""
    pipeline = plan.pipeline
    story = None
    if pipeline.story.enabled:
        story = StoryGenerator(
            explanations=pipeline.explanations,
            max_rows=pipeline.story.sample_rows,
            max_cell_chars=pipeline.story.max_cell_chars,
        )
    tracker.publish(story, plan.graph(), metrics=pipeline.metrics, latest_metrics=plan.latest_metrics_path)


def record_failure(
    plan: PipelinePlan, run_id: str, step_name: str, message: str, record_names: list[str] | None = None
) -> None:
    """Record that ``step_name`` failed outside its body, and publish the run's story.

    Two cases fail a step outside its tracked work: an input that cannot load (read from the
    dataset store before the tracker record starts) and a failing blocking check. ``message``
    is masked for credentials; a record the body already ended keeps what it did (its after
    snapshot).
    """
    tracker = RunTracker(plan.stories_dir, plan.name, run_id, sample_rows=plan.pipeline.story.sample_rows)
    for name in record_names or [step_name]:
        tracker.end_step(step_name, "failed", error_message=Redactor().redact_text(message), record_name=name)
    _terminal(tracker)[step_name] = "failed"
    publish_story(plan, tracker)


@dataclass
class StepExecution:
    """One execution of one step for one partition (or unpartitioned)."""

    plan: PipelinePlan
    step: Step
    context: dg.AssetExecutionContext
    partition_key: str | None
    redactor: Redactor = field(default_factory=Redactor)
    env: EnvNamespace = field(default_factory=EnvNamespace)
    run_config: StepRunConfig | None = None
    #: Every partition key this step runs in this run (one for a partition run, the range for a
    #: single-run backfill); ``[None]`` unpartitioned.
    run_keys: list[str | None] = field(default_factory=lambda: [None])

    @property
    def record_name(self) -> str:
        """The tracker record of this execution: the step, or ``<step>@<key>`` in a range run."""
        return record_name(self.step.name, self.partition_key, self.run_keys)

    @property
    def last_of_step(self) -> bool:
        """Whether this is the step's last execution in the run (the last key of a range)."""
        return self.partition_key == self.run_keys[-1]

    @property
    def engine(self) -> str:
        return self.plan.pipeline.step_engine(self.step)

    @cached_property
    def tracker(self) -> RunTracker:
        return RunTracker(
            self.plan.stories_dir,
            self.plan.name,
            self.context.run_id,
            self.redactor,
            sample_rows=self.plan.pipeline.story.sample_rows,
        )

    @property
    def story_path(self) -> str:
        return str(self.tracker.story_path)

    def variables(self) -> dict[str, Any]:
        cfg = self.run_config or StepRunConfig()
        values: dict[str, Any] = {
            "run_id": self.context.run_id,
            "pipeline": self.plan.name,
            "env": self.env,
            "watermark_start": cfg.watermark_start,
            "watermark_end": cfg.watermark_end,
        }
        if self.partition_key is not None:
            # Every key of the run: one for a partition run, the whole range for a single-run backfill.
            ranged = self.context.has_partition_key or self.context.has_partition_key_range
            keys = list(self.context.partition_keys) if ranged else [self.partition_key]
            values.update(partition_variables(self.context.assets_def.partitions_def, self.partition_key, keys))
        return values

    def render_value(self) -> str:
        if self.step.type == "sql":
            text = render_sql(self.step.value, self.variables(), dialect_for(self.engine))
        else:
            text = render_text(self.step.value, self.variables())
        self.redactor.add(*self.env.used.values())  # values read through {{ env.NAME }} never leave the step
        return text

    def params(self) -> dict[str, Any]:
        """Rendered params with secrets resolved and connections expanded (values redacted later)."""
        rendered = render_params(dict(self.step.params), self.variables())
        self.redactor.add(*self.env.used.values())
        out: dict[str, Any] = {key: self._resolve_secrets(value, f"params.{key}") for key, value in rendered.items()}
        conn_name = out.pop("connection", None)
        if conn_name is not None:
            conn = getattr(self.context.resources, self.plan.connection_key(conn_name))
            conn_params, secrets = conn.reader_params()
            self.redactor.add(*secrets.values())
            conn_params = self._resolve_secrets(conn_params, f"connection '{conn_name}'")
            for k, v in conn_params.items():
                if k == "connection_string" or k == "jdbc_url":
                    v = self.plan.resolve_path(v) if isinstance(v, str) else v
                out.setdefault(k, v)
            self.context.log_event(
                dg.AssetObservation(
                    asset_key=self.context.assets_def.keys_by_output_name[
                        next(iter(self.context.assets_def.keys_by_output_name))
                    ],
                    metadata={
                        **OdibiMetadataSet(
                            connection=conn_name,
                            connection_target=self.redactor.redact_text(
                                redact_url(str(conn_params.get("connection_string") or conn_params.get("jdbc_url")))
                            ),
                        )
                    },
                    partition=self.partition_key,
                )
            )
        return out

    def _resolve_secrets(self, value: Any, where: str) -> Any:
        """Replace ``{"secret": NAME}`` (at any depth) with the environment variable's value."""
        try:
            return SecretResolver(redactor=self.redactor).resolve(value, where)
        except SecretNotFoundError as exc:
            raise dg.Failure(
                description=f"step '{self.step.name}': {exc.where}: secret environment variable '{exc.key}' is not set"
            ) from None

    def explanation(self) -> str | None:
        text = self.step.metadata.get("description") or self.plan.pipeline.explanations.get(self.step.name)
        return str(text) if text else None

    def _final_attempt(self, exc: BaseException) -> bool:
        """Whether Dagster will not run the step again after ``exc``."""
        if isinstance(exc, dg.Failure) and not exc.allow_retries:
            return True
        policy = self.context.op_def.retry_policy
        return policy is None or self.context.retry_number >= policy.max_retries

    def update_story(self, *, step_ended: bool = False, force: bool = False) -> None:
        """Re-publish the run's tracker JSON, story and metrics (all steps, all processes).

        A publish merges every step file and renders the whole story, so publishing at every
        step start and end made long pipelines quadratic (80 steps: 60% of the run). It now
        runs at the run's first step, when the step that just ended was the run's last one to
        run, and otherwise only when the last publish is older than ``story.refresh_seconds``
        and than :data:`PUBLISH_COST_FACTOR` times that publish's duration (so publishing stays
        a small share of a long run). A step that failed for good publishes at once (``force``).
        """
        if not force and not self._publish_due(step_ended):
            return
        started = time.perf_counter()
        try:
            publish_story(self.plan, self.tracker)
        except Exception as exc:  # the story must never fail the step
            self.context.log.warning(f"odibi: could not update the run story: {exc}")
        _per_run(_PUBLISH_COST, self.tracker, {})["seconds"] = time.perf_counter() - started

    def _publish_due(self, step_ended: bool) -> bool:
        age = self.tracker.published_age()
        if age is None:
            return True  # the run's first publish: the story exists from the first step on
        refresh = self.plan.pipeline.story.refresh_seconds
        if refresh > 0:  # 0 asks for every step start and end, whatever it costs
            cost = _per_run(_PUBLISH_COST, self.tracker, {}).get("seconds", 0.0)
            refresh = max(refresh, PUBLISH_COST_FACTOR * cost)
        if age >= refresh:
            return True
        return step_ended and not self._steps_left()

    def _steps_left(self) -> bool:
        """Whether a step of this run has not ended and can still run (no failed ancestor)."""
        keys = self.context.dagster_run.step_keys_to_execute
        if keys is None:
            return False  # the run's shape is unknown: publish at every step end, as before
        planned = [self.plan.steps_by_op[k] for k in keys if k in self.plan.steps_by_op]
        known = _terminal(self.tracker)

        def status(name: str) -> str | None:
            if name not in known:
                # Every step of a run has the same keys: its last record tells whether it ended.
                record = self.tracker.read_step(record_name(name, self.run_keys[-1], self.run_keys))
                if record is not None and record.get("status") in ("success", "failed", "cached"):
                    known[name] = str(record["status"])
            return known.get(name)

        return self.plan.step_graph.any_can_run(planned, status)

    def reused(self) -> None:
        """The step was reused, not run (ODIBI's CACHED state, its record already written): it
        has ended, so publish as a step end does, and tell ODIBI's node hooks."""
        if self.last_of_step:
            _terminal(self.tracker)[self.step.name] = "success"
        self.update_story(step_ended=self.last_of_step)
        events.emit(
            self,
            "node_complete",
            {"step_name": self.step.name, "layer": self.step.layer, "duration_ms": 0.0, "state": "CACHED"},
        )

    @contextmanager
    def tracked(self, before: Snapshot | None, sql: str | None) -> Iterator[dict[str, Any]]:
        """Tracker start/end, ODIBI node events and the story around a step's work."""
        outcome: dict[str, Any] = {}
        step = self.step
        events.emit(self, "node_start", {"step_name": step.name, "layer": step.layer})
        self.tracker.start_step(
            step.name,
            step.layer,
            inputs=step.inputs,
            outputs=step.outputs,
            sql=sql,
            explanation=self.explanation(),
            before=before,
            record_name=self.record_name,
            partition_key=self.partition_key,
            attempt=self.context.retry_number + 1,
        )
        _terminal(self.tracker).pop(step.name, None)  # a retry runs it again
        self.update_story()
        started = time.perf_counter()
        try:
            yield outcome
        except BaseException as exc:
            raw = f"{type(exc).__name__}: {exc}"
            message = self.redactor.redact_text(raw)
            self.tracker.end_step(step.name, "failed", error_message=message, record_name=self.record_name)
            if self._final_attempt(exc):
                # Not while a retry policy will run the step again: the story would flap.
                _terminal(self.tracker)[step.name] = "failed"
                self.update_story(force=True)
            events.emit(self, "node_error", {"step_name": step.name, "layer": step.layer, "error_message": message})
            if message != raw:
                # The error quotes a secret (a URL with a password, say): Dagster would store
                # it in the event log, so raise a redacted error without the original chain.
                raise dg.Failure(description=f"step '{step.name}' failed: {message}") from None
            raise
        duration_ms = (time.perf_counter() - started) * 1000
        self.tracker.end_step(
            step.name, "success", after=outcome.get("after"), extra=outcome.get("extra"), record_name=self.record_name
        )
        if self.last_of_step:
            _terminal(self.tracker)[step.name] = "success"
        self.update_story(step_ended=self.last_of_step)
        events.emit(
            self,
            "node_complete",
            {"step_name": step.name, "layer": step.layer, "duration_ms": round(duration_ms, 3), "state": "SUCCESS"},
        )


def partition_variables(pdef: dg.PartitionsDefinition | None, key: str, keys: list[str]) -> dict[str, Any]:
    """The template variables of partition ``key`` (``keys``: every key of the run)."""
    start = end = key
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        window = pdef.time_window_for_partition_key(key)
        start, end = window.start.isoformat(), window.end.isoformat()
    return {"partition_key": key, "partition_keys": keys, "partition_start": start, "partition_end": end}


def record_name(step: str, partition_key: str | None, run_keys: list[str | None]) -> str:
    """The tracker record of ``step`` for ``partition_key``: one per partition in a range run."""
    return f"{step}@{partition_key}" if len(run_keys) > 1 else step


@contextmanager
def sources_unchanged(inputs: dict[str, DatasetRef]) -> Iterator[None]:
    """Refuse to commit a step's outputs if a source it read in place (``ingest_mode:
    reference``) changed while it ran: a read racing a rewrite may mix old and new rows.

    Covers every write that goes through :func:`paths.atomic_output` (datasets, file
    targets); Delta and database targets commit on their own and are not re-checked.
    """
    manifests = [p for ref in inputs.values() if ref.format == "source" for p in ref.paths]
    if not manifests:
        yield
        return

    def check() -> None:
        for manifest in manifests:
            try:
                verified_manifest(manifest)
            except SourceChangedError as exc:
                # Retrying cannot help: only materializing the ingest again can.
                raise dg.Failure(description=f"nothing was written: {exc}", allow_retries=False) from None

    with paths.commit_guard(check):
        yield


def engine_context(execution: StepExecution) -> Any:
    """A fresh engine context of the step's engine resource (close it when done).

    A Spark step says whether its pipeline uses Azure storage: a session it starts then gets the
    hadoop-azure jars (see ``SparkEngine.azure``).
    """
    key = execution.plan.engine_key(execution.step)
    resource = getattr(execution.context.resources, key)
    if key == SPARK_ENGINE_KEY:
        return resource.context(azure=execution.plan.uses_azure_storage)
    return resource.context()


def select_partition(ref: DatasetRef, keys: list[str] | None) -> DatasetRef:
    """The part of an input that belongs to the partitions being computed."""
    if keys is None or not ref.partition_keys:
        return ref
    wanted = set(keys)
    pairs = [(p, k) for p, k in zip(ref.paths, ref.partition_keys, strict=True) if k in wanted]
    if not pairs:
        return ref
    return DatasetRef(tuple(p for p, _ in pairs), ref.format, ref.asset_key, tuple(k for _, k in pairs))
