"""Store and publish steps: write a step's (first) input to its target and report what was written."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import dagster as dg

from odibi_dagster.engines import paths
from odibi_dagster.engines.base import DatasetRef, Snapshot, WriteInfo
from odibi_dagster.engines.versions import content_version
from odibi_dagster.observe.metadata import column_schema
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
from odibi_dagster.observe.redact import redact_url
from odibi_dagster.observe.snapshot import snapshot_ref
from odibi_dagster.translate.runtime import StepExecution, engine_context, select_partition, sources_unchanged


def run_sink_step(
    execution: StepExecution, inputs: dict[str, DatasetRef], upstream_keys: dict[str, list[str] | None]
) -> dict[str, Any]:
    """Run a store/publish step: write the (first) input to the target. Returns metadata."""
    plan, step = execution.plan, execution.step
    inputs = {name: select_partition(ref, upstream_keys.get(name)) for name, ref in inputs.items()}
    name, ref = next(iter(inputs.items()))
    if len(inputs) > 1:
        execution.context.log.warning(
            f"step '{step.name}': {step.layer} writes its first input '{name}' only (as ODIBI does)"
        )
    before = snapshot_ref(ref, plan.pipeline.story.sample_rows)
    with execution.tracked(before, None) as outcome, sources_unchanged(inputs):
        started = time.perf_counter()
        params = execution.params()
        target = plan.resolve_value(execution.render_value(), params)
        info = _fast_parquet_copy(execution, ref, target, params)
        if info is None:
            ctx = engine_context(execution)
            try:
                info = ctx.write(ctx.load(ref), target, **params)
            finally:
                ctx.close()
        duration = time.perf_counter() - started
        uri = execution.redactor.redact_text(redact_url(info.uri))
        rows = int(info.rows if info.rows is not None else before.row_count)
        md = _sink_metadata(execution, before, info, uri, rows, str(params.get("mode", "overwrite")), duration)
        md.update(OdibiMetadataSet(data_version=_written_version(target, info)))
        outcome["after"] = before
        outcome["extra"] = {"target": uri, "rows_written": rows, "format": info.format, "delta_version": info.version}
        execution.context.log_event(
            dg.AssetObservation(
                asset_key=execution.context.asset_key,
                metadata={**OdibiMetadataSet(written_to=uri, rows_written=rows, format=info.format)},
                partition=execution.partition_key,
            )
        )
    return md


def _written_version(target: str, info: WriteInfo) -> str | None:
    """The data version of what a store/publish wrote: a Delta table's version; ``None`` for other
    targets, so Dagster derives one from the input's data version and the step's code version."""
    if info.format != "delta":
        return None
    try:
        return content_version(target, "delta")
    except Exception:  # a catalog table or a URL fsspec cannot list: the version Spark reported
        return f"delta-v{info.version}" if info.version is not None else None


def _sink_metadata(
    execution: StepExecution, before: Snapshot, info: WriteInfo, uri: str, rows: int, mode: str, duration: float
) -> dict[str, Any]:
    """The materialization metadata of a written target."""
    md: dict[str, Any] = {
        "dagster/uri": dg.MetadataValue.text(uri),
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(before)),
        **OdibiMetadataSet(
            format=info.format,
            mode=mode,
            duration_ms=round(duration * 1000, 3),
            rows_per_second=round(rows / duration, 3) if duration > 0 else None,
            story=dg.MetadataValue.path(execution.story_path),
            delta_version=int(info.version) if info.version is not None else None,
        ),
    }
    if execution.partition_key is not None:
        md["dagster/partition_row_count"] = dg.MetadataValue.int(rows)
    return md


def _fast_parquet_copy(
    execution: StepExecution, ref: DatasetRef, target: str, params: dict[str, Any]
) -> WriteInfo | None:
    """Storing an intermediate Parquet dataset as a local Parquet file is a file copy, not a rewrite."""
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
            shutil.copyfile(ref.paths[0], tmp)
    return WriteInfo(uri=target, format="parquet", rows=None)
