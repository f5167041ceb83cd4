"""What happens inside an odibi asset when Dagster runs it (ODIBI's Node.run).

Ingest and transform steps read or compute a frame with their engine, persist it
through the dataset store and yield one materialization per dataset with the
tracker's metadata. Store and publish steps write their target and report it.
Every step records itself in the run's tracker; the run's story is re-published as it goes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dagster as dg

from odibi_dagster.config.imports import bind_inputs, resolve_callable
from odibi_dagster.config.models import Step
from odibi_dagster.config.sql import dialect_for
from odibi_dagster.config.templating import EnvNamespace, render_params, render_sql, render_text
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import DatasetRef, Snapshot
from odibi_dagster.engines.secrets import SecretNotFoundError, SecretResolver
from odibi_dagster.engines.source_ref import (
    REFERENCE_FORMATS,
    SourceChangedError,
    SourceManifest,
    encode_sample,
    fingerprint,
    verified_manifest,
)
from odibi_dagster.io.dataset_store import DatasetLayout
from odibi_dagster.observe import events
from odibi_dagster.observe.lineage import sql_column_lineage
from odibi_dagster.observe.metadata import column_schema, dataset_metadata
from odibi_dagster.observe.redact import Redactor, redact_url
from odibi_dagster.observe.snapshot import normalize_type, snapshot_ref
from odibi_dagster.observe.story.generator import StoryGenerator
from odibi_dagster.observe.tracker import RunTracker
from odibi_dagster.plan import DATASET_STORE_KEY, PipelinePlan
from odibi_dagster.triggers.sensors import dynamic_file_source


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


def _terminal(tracker: RunTracker) -> dict[str, str]:
    key = str(tracker.run_dir)
    if key not in _TERMINAL and len(_TERMINAL) >= 64:  # long-lived processes run many runs
        _TERMINAL.pop(next(iter(_TERMINAL)))
    return _TERMINAL.setdefault(key, {})


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
    tracker.publish(story, plan.graph(), metrics=pipeline.metrics)


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
            values["partition_key"] = self.partition_key
            # Every key of the run: one for a partition run, the whole range for a single-run backfill.
            ranged = self.context.has_partition_key or self.context.has_partition_key_range
            values["partition_keys"] = list(self.context.partition_keys) if ranged else [self.partition_key]
            start = end = self.partition_key
            pdef = self.context.assets_def.partitions_def
            if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
                window = pdef.time_window_for_partition_key(self.partition_key)
                start, end = window.start.isoformat(), window.end.isoformat()
            values["partition_start"], values["partition_end"] = start, end
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
                        "odibi/connection": conn_name,
                        "odibi/connection_target": self.redactor.redact_text(
                            redact_url(str(conn_params.get("connection_string") or conn_params.get("jdbc_url")))
                        ),
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
        run, and otherwise only when the last publish is older than ``story.refresh_seconds``.
        A step that failed for good publishes at once (``force``).
        """
        if not force and not self._publish_due(step_ended):
            return
        try:
            publish_story(self.plan, self.tracker)
        except Exception as exc:  # the story must never fail the step
            self.context.log.warning(f"odibi: could not update the run story: {exc}")

    def _publish_due(self, step_ended: bool) -> bool:
        try:
            age = time.time() - self.tracker.tracker_path.stat().st_mtime
        except FileNotFoundError:
            return True  # the run's first publish: the story exists from the first step on
        if age >= self.plan.pipeline.story.refresh_seconds:
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
                if record is not None and record.get("status") in ("success", "failed"):
                    known[name] = str(record["status"])
            return known.get(name)

        memo: dict[str, bool] = {}

        def blocked(name: str) -> bool:
            # Whether an ancestor failed; iterative and memoised (deep chains, no recursion limit).
            stack = [name]
            while stack:
                current = stack[-1]
                if current in memo:
                    stack.pop()
                    continue
                ups = self.plan.upstream_steps.get(current, [])
                pending = [up for up in ups if up not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                memo[current] = any(status(up) == "failed" or memo[up] for up in ups)
                stack.pop()
            return memo[name]

        return any(status(name) is None and not blocked(name) for name in planned)

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


def record_name(step: str, partition_key: str | None, run_keys: list[str | None]) -> str:
    """The tracker record of ``step`` for ``partition_key``: one per partition in a range run."""
    return f"{step}@{partition_key}" if len(run_keys) > 1 else step


def read_api(url: str, params: dict[str, Any]) -> Any:
    """ODIBI's ``type: api`` ingest: GET a JSON endpoint into a DataFrame.

    ``params``: ``headers`` (dict; use ``{"secret": NAME}`` values for tokens),
    ``record_path`` (where the list of records sits in the response), ``timeout`` (s).
    """
    import json
    import urllib.request

    import pandas as pd

    unknown = set(params) - {"headers", "record_path", "timeout"}
    if unknown:
        raise ValueError(f"unknown api reader param(s) {sorted(unknown)}; supported: headers, record_path, timeout")
    request = urllib.request.Request(url, headers={str(k): str(v) for k, v in (params.get("headers") or {}).items()})
    with urllib.request.urlopen(request, timeout=float(params.get("timeout", 60))) as response:
        payload = json.loads(response.read().decode("utf-8"))
    for part in str(params.get("record_path") or "").split("."):
        if part:
            payload = payload[part]
    if isinstance(payload, dict):
        payload = [payload]
    return pd.json_normalize(payload)


@contextmanager
def _sources_unchanged(inputs: dict[str, DatasetRef]) -> Iterator[None]:
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


def _engine_context(execution: StepExecution):
    resource = getattr(execution.context.resources, execution.plan.engine_key(execution.step))
    return resource.context()


def _select_partition(ref: DatasetRef, keys: list[str] | None) -> DatasetRef:
    """The part of an input that belongs to the partitions being computed."""
    if keys is None or not ref.partition_keys:
        return ref
    wanted = set(keys)
    pairs = [(p, k) for p, k in zip(ref.paths, ref.partition_keys, strict=True) if k in wanted]
    if not pairs:
        return ref
    return DatasetRef(tuple(p for p, _ in pairs), ref.format, ref.asset_key, tuple(k for _, k in pairs))


def _reference_manifest(
    execution: StepExecution, ctx: Any, source: str, params: dict[str, Any], frame: Any
) -> SourceManifest | None:
    """The manifest recording ``source`` as this ingest's dataset, or None to copy it instead.

    Copies when the source is not plain files in a lazily readable format, matches no
    files, or its resolved params carry a secret (the manifest is stored as plain JSON).
    """
    try:
        fmt = ctx.source_format(source, dict(params))
    except ValueError:
        return None
    if fmt not in REFERENCE_FORMATS:
        return None
    text = json.dumps(params, default=str)
    if execution.redactor.redact_text(text) != text:
        return None
    try:
        prints = fingerprint(source)
    except (FileNotFoundError, OSError):
        return None
    if not prints:
        return None
    snap = ctx.snapshot(frame, execution.plan.pipeline.story.sample_rows)
    return SourceManifest(
        source=source,
        params=params,
        engine=execution.engine,
        fingerprint=prints,
        row_count=snap.row_count,
        schema=[[name, normalize_type(kind)] for name, kind in snap.schema],
        sample_ipc=encode_sample(snap.sample),
        step=execution.step.name,
        read_schema=ctx.read_schema(frame, fmt),
    )


def run_data_step(
    execution: StepExecution,
    inputs: dict[str, DatasetRef],
    upstream_keys: dict[str, list[str] | None],
    config: StepRunConfig,
) -> tuple[dict[str, tuple[DatasetRef, dict[str, Any]]], Snapshot | None]:
    """Run an ingest/transform step for one partition; returns refs and metadata per dataset."""
    plan, step = execution.plan, execution.step
    story = plan.pipeline.story
    inputs = {name: _select_partition(ref, upstream_keys.get(name)) for name, ref in inputs.items()}
    first_input = next(iter(inputs.values()), None)
    before = snapshot_ref(first_input, story.sample_rows) if first_input is not None else None
    sql_text = execution.render_value() if step.type == "sql" else None
    io: DatasetLayout = getattr(execution.context.resources, DATASET_STORE_KEY).at(plan.work_dir)
    results: dict[str, tuple[DatasetRef, dict[str, Any]]] = {}
    manifest: SourceManifest | None = None
    with execution.tracked(before, sql_text) as outcome, _sources_unchanged(inputs):
        started = time.perf_counter()
        ctx = _engine_context(execution)
        try:
            params = execution.params()
            if step.layer == "ingest" and step.type == "function":
                # A custom reader: the function takes the step's params and returns a frame.
                frames = {None: resolve_callable(step.value, plan.pipeline.module_dirs)(**params)}
            elif step.layer == "ingest" and step.type == "api":
                frames = {None: read_api(execution.render_value(), params)}
            elif step.layer == "ingest":
                source = (
                    config.source
                    or dynamic_file_source(plan, step, execution.partition_key)
                    or execution.render_value()
                )
                resolved = plan.resolve_value(source, params)
                frames = {None: ctx.read(resolved, **params)}
                if plan.ingests_by_reference(step):
                    manifest = _reference_manifest(execution, ctx, resolved, params, frames[None])
            elif step.type == "sql":
                for name, ref in inputs.items():
                    ctx.register_temp(name, ref)
                frames = {None: ctx.execute_sql(sql_text)}
            else:  # function
                fn = resolve_callable(step.value, plan.pipeline.module_dirs)
                # Functions get the engine's own frames: pandas on pandas, Spark DataFrames on Spark.
                native = execution.engine == "spark"
                frames_in = {
                    name: ctx.load(ref) if native else ctx.to_pandas(ctx.load(ref)) for name, ref in inputs.items()
                }
                try:
                    args, kwargs = bind_inputs(fn, frames_in, params)
                except TypeError as exc:
                    raise dg.Failure(description=f"step '{step.name}': {exc}") from None
                result = fn(*args, **kwargs)
                if isinstance(result, dict):
                    missing = set(step.outputs) - set(result)
                    if missing:
                        raise dg.Failure(
                            description=f"step '{step.name}': function returned no frame for "
                            f"output(s) {sorted(missing)}"
                        )
                    frames = {k: result[k] for k in step.outputs}
                else:
                    frames = {None: result}
            persisted: dict[int, DatasetRef] = {}
            for logical, dataset in step.outputs.items():
                frame = frames.get(logical, frames.get(None))
                key = plan.asset_keys[dataset]
                if manifest is not None:
                    results[dataset] = (io.persist_reference(manifest, key, execution.partition_key), {})
                    continue
                if id(frame) in persisted:
                    # Same frame under several names: copy the file instead of computing it twice.
                    frame = ctx.load(persisted[id(frame)])
                ref, _info = io.persist(frame, key, execution.partition_key)
                persisted.setdefault(id(frames.get(logical, frames.get(None))), ref)
                results[dataset] = (ref, {})
        finally:
            ctx.close()
        duration = time.perf_counter() - started
        after = None
        lineage = None
        if step.type == "sql" and sql_text:  # the same SQL result backs every output of the step
            lineage = sql_column_lineage(
                sql_text,
                {name: snapshot_ref(r, 0).columns for name, r in inputs.items()},
                {name: dg.AssetKey(list(r.asset_key)) for name, r in inputs.items()},
                dialect=dialect_for(execution.engine),
            )
        for dataset, (ref, _) in results.items():
            snap = snapshot_ref(ref, story.sample_rows)
            after = after or snap
            md = dataset_metadata(
                snap,
                before,
                duration_s=duration,
                lineage=lineage,
                uri=manifest.source if manifest is not None else ref.paths[0],
                story_path=execution.story_path,
                sample_rows=story.sample_rows,
                max_cell_chars=story.max_cell_chars,
                partition=execution.partition_key is not None,
                redactor=execution.redactor,
            )
            if manifest is not None:
                md["odibi/ingest_mode"] = dg.MetadataValue.text("reference")
            results[dataset] = (ref, md)
        outcome["after"] = after
    return results, before


def run_sink_step(
    execution: StepExecution, inputs: dict[str, DatasetRef], upstream_keys: dict[str, list[str] | None]
) -> dict[str, Any]:
    """Run a store/publish step: write the (first) input to the target. Returns metadata."""
    plan, step = execution.plan, execution.step
    story = plan.pipeline.story
    inputs = {name: _select_partition(ref, upstream_keys.get(name)) for name, ref in inputs.items()}
    name, ref = next(iter(inputs.items()))
    if len(inputs) > 1:
        execution.context.log.warning(
            f"step '{step.name}': {step.layer} writes its first input '{name}' only (as ODIBI does)"
        )
    before = snapshot_ref(ref, story.sample_rows)
    with execution.tracked(before, None) as outcome, _sources_unchanged(inputs):
        started = time.perf_counter()
        params = execution.params()
        target = plan.resolve_value(execution.render_value(), params)
        info = _fast_parquet_copy(execution, ref, target, params)
        if info is None:
            ctx = _engine_context(execution)
            try:
                info = ctx.write(ctx.load(ref), target, **params)
            finally:
                ctx.close()
        duration = time.perf_counter() - started
        uri = execution.redactor.redact_text(redact_url(info.uri))
        rows = info.rows if info.rows is not None else before.row_count
        md: dict[str, Any] = {
            "dagster/uri": dg.MetadataValue.text(uri),
            "dagster/row_count": dg.MetadataValue.int(int(rows)),
            "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(before)),
            "odibi/format": dg.MetadataValue.text(info.format),
            "odibi/mode": dg.MetadataValue.text(str(params.get("mode", "overwrite"))),
            "odibi/duration_ms": dg.MetadataValue.float(round(duration * 1000, 3)),
            "odibi/story": dg.MetadataValue.path(execution.story_path),
        }
        if execution.partition_key is not None:
            md["dagster/partition_row_count"] = dg.MetadataValue.int(int(rows))
        if duration > 0:
            md["odibi/rows_per_second"] = dg.MetadataValue.float(round(rows / duration, 3))
        if info.version is not None:
            md["odibi/delta_version"] = dg.MetadataValue.int(int(info.version))
        outcome["after"] = before
        outcome["extra"] = {
            "target": uri,
            "rows_written": int(rows),
            "format": info.format,
            "delta_version": info.version,
        }
        execution.context.log_event(
            dg.AssetObservation(
                asset_key=execution.context.asset_key,
                metadata={
                    "odibi/written_to": dg.MetadataValue.text(uri),
                    "odibi/rows_written": dg.MetadataValue.int(int(rows)),
                    "odibi/format": dg.MetadataValue.text(info.format),
                },
                partition=execution.partition_key,
            )
        )
    return md


def _fast_parquet_copy(execution: StepExecution, ref: DatasetRef, target: str, params: dict[str, Any]):
    """Storing an intermediate Parquet dataset as a local Parquet file is a file copy, not a rewrite."""
    from odibi_dagster.engines.base import WriteInfo

    fmt = str(params.get("format") or params.get("source_type") or "").lower()
    extra = set(params) - {"format", "source_type", "mode"}
    if (
        execution.engine != "pandas"
        or ref.format != "parquet"
        or len(ref.paths) != 1
        or extra
        or params.get("mode", "overwrite") != "overwrite"
        or paths.is_remote(target)
        or paths.is_remote(ref.paths[0])
        or (fmt and fmt != "parquet")
        or (not fmt and not target.lower().endswith((".parquet", ".pq")))
    ):
        return None
    with paths.atomic_output(target) as tmp:
        try:
            os.link(ref.paths[0], tmp)  # the dataset is only ever replaced, never rewritten in place
        except OSError:
            import shutil

            shutil.copyfile(ref.paths[0], tmp)
    return WriteInfo(uri=target, format="parquet", rows=None)
