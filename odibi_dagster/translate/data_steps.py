"""Ingest and transform steps: read or compute frames with the step's engine, persist them
through the dataset store, and describe each dataset in its materialization's metadata."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import dagster as dg

from odibi_dagster.config.imports import bind_inputs, resolve_callable
from odibi_dagster.config.sql import dialect_for
from odibi_dagster.engines.base import DatasetRef, Snapshot
from odibi_dagster.engines.source_ref import REFERENCE_FORMATS, SourceManifest, encode_sample, fingerprint
from odibi_dagster.engines.versions import content_version, source_version
from odibi_dagster.io.dataset_store import DatasetLayout
from odibi_dagster.observe.metadata import dataset_metadata
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
from odibi_dagster.observe.redact import redact_url
from odibi_dagster.observe.snapshot import normalize_type, snapshot_ref
from odibi_dagster.plan import DATASET_STORE_KEY
from odibi_dagster.translate.api_ingest import read_api
from odibi_dagster.translate.runtime import (
    StepExecution,
    StepRunConfig,
    engine_context,
    select_partition,
    sources_unchanged,
)
from odibi_dagster.triggers.sensors.file_watch import dynamic_file_source

if TYPE_CHECKING:  # the lineage code (and sqlglot's optimizer) loads when a step runs, not with the definitions
    from odibi_dagster.observe.lineage import OutputColumn

#: A step's frames by output name; ``None`` is the one frame behind every output.
Frames = dict[str | None, Any]
#: Per dataset, its persisted ref and its materialization metadata.
DataResults = dict[str, tuple[DatasetRef, dict[str, Any]]]


def run_data_step(
    execution: StepExecution,
    inputs: dict[str, DatasetRef],
    upstream_keys: dict[str, list[str] | None],
    config: StepRunConfig,
) -> tuple[DataResults, Snapshot | None]:
    """Run an ingest/transform step for one partition; returns refs and metadata per dataset."""
    plan, step = execution.plan, execution.step
    inputs = {name: select_partition(ref, upstream_keys.get(name)) for name, ref in inputs.items()}
    first_input = next(iter(inputs.values()), None)
    before = snapshot_ref(first_input, plan.pipeline.story.sample_rows) if first_input is not None else None
    sql_text = execution.render_value() if step.type == "sql" else None
    store: DatasetLayout = getattr(execution.context.resources, DATASET_STORE_KEY).at(plan.work_dir)
    with execution.tracked(before, sql_text) as outcome, sources_unchanged(inputs):
        started = time.perf_counter()
        ctx = engine_context(execution)
        outcome["extra"] = extra = {}  # what the tracker record adds (an ingest's source, SQL lineage)
        try:
            frames, manifest = _frames(execution, ctx, inputs, config, sql_text, extra)
            refs = _persist(execution, ctx, store, frames, manifest)
        finally:
            ctx.close()
        duration = time.perf_counter() - started
        columns = _sql_lineage(execution, inputs, sql_text)
        results, outcome["after"] = _described(execution, refs, inputs, before, columns, manifest, duration)
        if step.type == "sql" and sql_text:
            # The story's column lineage: None when the SQL could not be analysed.
            from odibi_dagster.observe.lineage import lineage_record

            extra["column_lineage"] = lineage_record(columns, step.inputs) if columns is not None else None
    return results, before


def _sql_lineage(
    execution: StepExecution, inputs: dict[str, DatasetRef], sql_text: str | None
) -> list[OutputColumn] | None:
    """The column lineage of a SQL step (the same SQL result backs every output of the step)."""
    if execution.step.type != "sql" or not sql_text:
        return None
    from odibi_dagster.observe.lineage import sql_lineage

    input_columns = {name: snapshot_ref(r, 0).columns for name, r in inputs.items()}
    return sql_lineage(sql_text, input_columns, dialect=dialect_for(execution.engine))


def _frames(
    execution: StepExecution,
    ctx: Any,
    inputs: dict[str, DatasetRef],
    config: StepRunConfig,
    sql_text: str | None,
    extra: dict[str, Any],
) -> tuple[Frames, SourceManifest | None]:
    """What the step computes, and the manifest of a source ingested by reference."""
    step = execution.step
    params = execution.params()
    if step.layer == "ingest":
        return _ingest(execution, ctx, params, config, extra)
    if step.type == "sql":
        for name, ref in inputs.items():
            ctx.register_temp(name, ref)
        return {None: ctx.execute_sql(sql_text)}, None
    return _call_function(execution, ctx, inputs, params), None


def _ingest(
    execution: StepExecution, ctx: Any, params: dict[str, Any], config: StepRunConfig, extra: dict[str, Any]
) -> tuple[Frames, SourceManifest | None]:
    """What an ingest reads; ``extra["source"]`` names it (credentials removed) for the story."""
    plan, step = execution.plan, execution.step
    if step.type == "function":
        # A custom reader: the function takes the step's params and returns a frame.
        extra["source"] = f"function {step.value}"
        return {None: resolve_callable(step.value, plan.pipeline.module_dirs)(**params)}, None
    if step.type == "api":
        url = execution.render_value()
        extra["source"] = execution.redactor.redact_text(redact_url(url))
        return {None: read_api(url, params)}, None
    source = config.source or dynamic_file_source(plan, step, execution.partition_key) or execution.render_value()
    resolved = plan.resolve_value(source, params)
    extra["source"] = execution.redactor.redact_text(redact_url(resolved))
    frame = ctx.read(resolved, **params)
    manifest = _reference_manifest(execution, ctx, resolved, params, frame) if plan.ingests_by_reference(step) else None
    cap_copy_memory = getattr(ctx, "cap_copy_memory", None)  # an engine whose copy buffers grow with RAM
    if manifest is None and cap_copy_memory is not None:
        cap_copy_memory()
    return {None: frame}, manifest


def _call_function(execution: StepExecution, ctx: Any, inputs: dict[str, DatasetRef], params: dict[str, Any]) -> Frames:
    """A ``function`` transform: its inputs by logical name, its frame (or a frame per output)."""
    plan, step = execution.plan, execution.step
    fn = resolve_callable(step.value, plan.pipeline.module_dirs)
    # Functions get the engine's own frames: pandas on pandas, Spark DataFrames on Spark.
    native = execution.engine == "spark"
    frames_in = {name: ctx.load(ref) if native else ctx.to_pandas(ctx.load(ref)) for name, ref in inputs.items()}
    try:
        args, kwargs = bind_inputs(fn, frames_in, params)
    except TypeError as exc:
        raise dg.Failure(description=f"step '{step.name}': {exc}") from None
    result = fn(*args, **kwargs)
    if not isinstance(result, dict):
        return {None: result}
    missing = set(step.outputs) - set(result)
    if missing:
        raise dg.Failure(description=f"step '{step.name}': function returned no frame for output(s) {sorted(missing)}")
    return {k: result[k] for k in step.outputs}


def _persist(
    execution: StepExecution, ctx: Any, store: DatasetLayout, frames: Frames, manifest: SourceManifest | None
) -> dict[str, DatasetRef]:
    """Each output dataset persisted through the dataset store (or recorded by reference)."""
    plan, step = execution.plan, execution.step
    refs: dict[str, DatasetRef] = {}
    persisted: dict[int, DatasetRef] = {}
    for logical, dataset in step.outputs.items():
        frame = frames.get(logical, frames.get(None))
        key = plan.asset_keys[dataset]
        if manifest is not None:
            refs[dataset] = store.persist_reference(manifest, key, execution.partition_key)
            continue
        if id(frame) in persisted:
            # Same frame under several names: copy the file instead of computing it twice.
            frame = ctx.load(persisted[id(frame)])
        ref, _info = store.persist(frame, key, execution.partition_key)
        persisted.setdefault(id(frames.get(logical, frames.get(None))), ref)
        refs[dataset] = ref
    return refs


def _described(
    execution: StepExecution,
    refs: dict[str, DatasetRef],
    inputs: dict[str, DatasetRef],
    before: Snapshot | None,
    columns: list[OutputColumn] | None,
    manifest: SourceManifest | None,
    duration: float,
) -> tuple[DataResults, Snapshot | None]:
    """Each dataset with its materialization metadata, and the snapshot of the first one."""
    story = execution.plan.pipeline.story
    lineage = None
    if columns is not None:
        from odibi_dagster.observe.lineage import table_column_lineage

        lineage = table_column_lineage(columns, {name: dg.AssetKey(list(r.asset_key)) for name, r in inputs.items()})
    results: DataResults = {}
    after = None
    for dataset, ref in refs.items():
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
            md.update(OdibiMetadataSet(ingest_mode="reference", data_version=source_version(manifest.fingerprint)))
        else:
            md.update(OdibiMetadataSet(data_version=content_version(ref.paths[0], ref.format)))
        results[dataset] = (ref, md)
    return results, after


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
    sample_rows = execution.plan.pipeline.story.sample_rows
    source_snapshot = getattr(ctx, "source_snapshot", None)  # an engine that can count the source cheaply
    snap = source_snapshot(frame, source, params, sample_rows) if source_snapshot else ctx.snapshot(frame, sample_rows)
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
