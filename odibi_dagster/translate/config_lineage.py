"""Column paths from a pipeline's config, without a run (``odibi-dagster lineage``).

The facts are the ones a run records, computed the same way: the input schemas are the ones
``validate`` propagates (each file source read by DuckDB with ``LIMIT 0``, each SQL step
bound against its inputs' schemas; see :mod:`odibi_dagster.engines.preflight`), each SQL
step's lineage is :func:`~odibi_dagster.observe.lineage.sql_lineage` on its SQL rendered as
validation renders it, and the path is built by :class:`~odibi_dagster.observe.column_paths.ColumnGraph`,
as in the story. Where the config alone cannot tell a dataset's columns (a function step's
output, a database source, an external input), the schema of the dataset a previous run
persisted is used when there is one.
"""

from __future__ import annotations

import os
from typing import Any

from odibi_dagster.config.models import PipelineConfig, Step
from odibi_dagster.config.sql import dialect_for
from odibi_dagster.config.templating import render_sql, sample_variables
from odibi_dagster.engines import paths
from odibi_dagster.engines.base import DatasetFormat, DatasetRef
from odibi_dagster.engines.preflight import Schema, check_columns, check_sources, partition_variables
from odibi_dagster.io.dataset_store import DatasetLayout
from odibi_dagster.observe.column_paths import ColumnGraph, StepColumns
from odibi_dagster.observe.lineage import lineage_record, sql_lineage
from odibi_dagster.observe.redact import redact_url
from odibi_dagster.observe.snapshot import snapshot_ref
from odibi_dagster.plan import PipelinePlan, mentions_secret_or_connection

__all__ = ["column_path", "config_column_graph", "config_step_columns"]

_DATASET_SUFFIXES: dict[str, DatasetFormat] = {".parquet": "parquet", ".delta": "delta", ".source.json": "source"}


def _ignore(_step: Step, _field: str, _message: str) -> None:
    """Data problems are ``validate``'s to report; lineage shows what is known."""


def _persisted_columns(ref: DatasetRef) -> list[str] | None:
    try:
        return [str(c) for c, _ in snapshot_ref(ref, 0).schema]
    except Exception:
        return None


def _persisted(plan: PipelinePlan, dataset: str) -> Schema | None:
    """The schema of ``dataset`` as a previous run persisted it (any partition), if any."""
    if dataset in plan.pipeline.external_inputs:
        ext = plan.pipeline.external_inputs[dataset]
        ref = DatasetRef((plan.resolve_path(ext.path),), ext.format, tuple(plan.external_keys[dataset].path))
    elif dataset in plan.asset_keys:
        key = plan.asset_keys[dataset]
        layout = DatasetLayout(plan.work_dir)
        hit = layout.existing(key, None)
        if hit is None:
            folder = layout.asset_dir(key)
            try:
                names = sorted(paths.fs_for(folder).ls(folder, detail=False)) if paths.isdir(folder) else []
            except OSError:
                names = []
            found = ((n, f) for n in names for s, f in _DATASET_SUFFIXES.items() if str(n).endswith(s))
            hit = next(found, None)
        if hit is None:
            return None
        ref = DatasetRef((str(hit[0]),), hit[1], tuple(key.path))
    else:
        return None
    columns = _persisted_columns(ref)
    return None if columns is None else [(c, "") for c in columns]


def _schemas(plan: PipelinePlan) -> dict[str, Schema]:
    """Every dataset's schema known before a run: sources, persisted data, then SQL binding."""
    pipeline = plan.pipeline
    known = check_sources(pipeline, pipeline.steps, _ignore)
    produced = [ds for s in pipeline.steps for ds in s.outputs.values()]
    for dataset in [*produced, *pipeline.external_inputs]:
        if dataset not in known:
            schema = _persisted(plan, dataset)
            if schema is not None:
                known[dataset] = schema
    check_columns(pipeline, pipeline.steps, known, _ignore)
    return known


def _source_text(plan: PipelinePlan, step: Step) -> str:
    """What an ingest reads or a store writes, as the run's story names it (credentials removed)."""
    if step.type == "function":
        return f"function {step.value}"
    if step.type == "api" or mentions_secret_or_connection(step.params):
        return redact_url(step.value)  # a URL, or a table/query of a connection
    return redact_url(plan.resolve_path(step.value))


def _sql_step(pipeline: PipelineConfig, step: Step, known: dict[str, Schema], common: dict[str, Any]) -> StepColumns:
    unknown = [ds for ds in step.inputs.values() if ds not in known]
    outputs = tuple(step.outputs.values())
    if unknown:
        note = f"lineage unknown: the columns of {', '.join(unknown)} are not known without a run"
        return StepColumns(kind="sql", outputs=outputs, lineage_note=note, **common)
    dialect = dialect_for(pipeline.step_engine(step))
    variables = partition_variables(pipeline) or sample_variables(pipeline.partitions is not None)
    try:
        sql = render_sql(step.value, variables, dialect)
    except Exception:
        return StepColumns(kind="sql", outputs=outputs, **common)
    columns = sql_lineage(sql, {logical: [c for c, _ in known[ds]] for logical, ds in step.inputs.items()}, dialect)
    schema = known.get(outputs[0]) if outputs else None
    return StepColumns(
        kind="sql",
        outputs=outputs,
        columns=tuple(c for c, _ in schema) if schema is not None else None,
        lineage=None if columns is None else tuple(lineage_record(columns, step.inputs)),
        **common,
    )


def config_step_columns(plan: PipelinePlan) -> list[StepColumns]:
    """The column facts of every step of ``plan``'s pipeline, from its config and input schemas."""
    pipeline = plan.pipeline
    known = _schemas(plan)
    out: list[StepColumns] = []
    for step in pipeline.steps:
        common: dict[str, Any] = {"name": step.name, "layer": step.layer, "inputs": tuple(step.inputs.values())}
        outputs = tuple(step.outputs.values())
        schema = known.get(outputs[0]) if outputs else None
        columns = tuple(c for c, _ in schema) if schema is not None else None
        if step.layer in ("store", "publish"):
            out.append(StepColumns(kind="sink", source=_source_text(plan, step), **common))
        elif step.layer == "ingest":
            out.append(
                StepColumns(kind="ingest", outputs=outputs, columns=columns, source=_source_text(plan, step), **common)
            )
        elif step.layer == "transform" and step.type == "sql":
            out.append(_sql_step(pipeline, step, known, common))
        elif step.layer == "transform":
            out.append(StepColumns(kind="function", outputs=outputs, columns=columns, **common))
    return out


def config_column_graph(plan: PipelinePlan) -> ColumnGraph:
    """The column graph of ``plan``'s pipeline from its config (see the module's docstring)."""
    missing = {
        name: f"external input (asset {'/'.join(ext.asset_key)})" for name, ext in plan.pipeline.external_inputs.items()
    }
    return ColumnGraph(config_step_columns(plan), missing=missing)


def column_path(
    path: str | os.PathLike[str], spec: str, *, pipeline: str | None = None, project: str | None = None
) -> list[str]:
    """The lines ``odibi-dagster lineage PATH DATASET.COLUMN`` prints: the column's upstream path
    and what uses it. Raises ``LookupError`` (naming what exists) for an unknown pipeline,
    dataset or column, ``ConfigValidationError`` for an invalid config.
    """
    from odibi_dagster.config.validation import load_pipelines
    from odibi_dagster.translate.definitions import build_plans
    from odibi_dagster.translate.translator import OdibiTranslator

    plans = build_plans(load_pipelines(path, project=project), OdibiTranslator(), (), None)
    if pipeline is not None:
        plans = [p for p in plans if p.name == pipeline]
        if not plans:
            raise LookupError(f"no pipeline named '{pipeline}' in {path}")
    found, errors = [], []
    for plan in plans:
        graph = config_column_graph(plan)
        try:
            found.append((plan, graph, graph.resolve(spec)))
        except LookupError as exc:
            errors.append(exc.args[0] if len(plans) == 1 else f"pipeline '{plan.name}': {exc.args[0]}")
    if len(found) > 1:
        names = ", ".join(plan.name for plan, _, _ in found)
        raise LookupError(f"'{spec}' is in several pipelines ({names}); choose one with --pipeline")
    if not found:
        raise LookupError("\n".join(errors) or f"no pipeline in {path}")
    _, graph, (dataset, column) = found[0]
    return graph.path_lines(dataset, column)
