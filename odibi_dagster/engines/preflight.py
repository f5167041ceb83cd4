"""Checks of the data before a run (``odibi-dagster validate`` and ``run``; not
``build_definitions``, so definitions load where the data is not): every file source exists,
every SQL step's columns exist, reader/writer params suit the file format, and where an
ODIBI-form config relies on a documented difference from ODIBI CORE.

Sources are the ingest steps' local paths, rendered with the pipeline's first partition key;
globs must match a file; remote paths are checked only when asked (``validate
--check-sources``). Schemas come from the sources themselves (DuckDB reads a sample: a
``LIMIT 0`` scan) and flow through the SQL steps: each SQL step is bound by DuckDB against
empty tables of its inputs' schemas (Spark SQL through sqlglot's schema-aware qualifier), and
its result schema becomes its outputs'. A function step, a database source or an unknown
format ends the propagation for what depends on it.
"""

from __future__ import annotations

import difflib
import glob as globlib
import os
import re
from collections.abc import Callable
from typing import Any

from odibi_dagster.config.errors import ConfigValidationError, Problem
from odibi_dagster.config.models import SINK_LAYERS, PipelineConfig, Step
from odibi_dagster.config.sql import dialect_for
from odibi_dagster.config.templating import (
    has_template,
    quote_ident,
    render_params,
    render_sql,
    render_text,
    sample_variables,
)
from odibi_dagster.engines import pandas_duckdb, paths
from odibi_dagster.engines.formats import format_of_extension
from odibi_dagster.plan import mentions_secret_or_connection

# (step, field, message) -> recorded by the caller's collector
Report = Callable[[Step, str, str], None]
Schema = list[tuple[str, str]]  # (column, DuckDB type)

_BINDER_COLUMN = re.compile(r'Referenced column "(?P<col>[^"]+)" not found')
_BINDER_TABLE = re.compile(r"Table with name (?P<table>\S+) does not exist")


def partition_variables(pipeline: PipelineConfig) -> dict[str, Any] | None:
    """Template variables for the pipeline's first partition (None: dynamic, no key to try)."""
    variables = sample_variables(partitioned=pipeline.partitions is not None)
    if pipeline.partitions is None:
        return variables
    if pipeline.partitions.type == "dynamic":
        return None
    from odibi_dagster.config.partitions import build_partitions_def

    pdef = build_partitions_def(pipeline.partitions, pipeline.name)
    first = pdef.get_first_partition_key() if pdef is not None else None  # not every key: hourly lists are long
    if first is None:
        return None
    variables.update(partition_key=first, partition_keys=[first])
    return variables


def _fed_by_sensor(pipeline: PipelineConfig, step: Step) -> bool:
    return any(getattr(sensor, "step", None) == step.name for sensor in pipeline.sensors)


def _local_source(pipeline: PipelineConfig, step: Step, variables: dict[str, Any]) -> str | None:
    """The rendered source path of a file ingest (None: not a file read this check can do)."""
    if step.layer != "ingest" or step.type in ("function", "api", "sql") or not step.value.strip():
        return None
    if mentions_secret_or_connection(step.params) or "env." in step.value:
        return None
    value = render_text(step.value, variables) if has_template(step.value) else step.value
    if "://" in value and not value.startswith("file://"):
        return value  # remote: checked only with check_remote
    value = value.removeprefix("file://")
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(pipeline.data_root.resolve(), value))


def _written_by_pipeline(pipeline: PipelineConfig, path: str, variables: dict[str, Any]) -> bool:
    for s in pipeline.steps:
        if s.layer in ("store", "publish") and s.value and "://" not in s.value:
            target = render_text(s.value, variables) if has_template(s.value) else s.value
            full = target if os.path.isabs(target) else os.path.join(pipeline.data_root.resolve(), target)
            if os.path.normpath(full) == os.path.normpath(path):
                return True
    return False


def check_sources(
    pipeline: PipelineConfig, steps: list[Step], report: Report, *, check_remote: bool = False
) -> dict[str, Schema]:
    """Report missing sources; return the schema of every dataset whose columns are known."""
    variables = partition_variables(pipeline)
    if variables is None:
        return {}
    known: dict[str, Schema] = {}
    readable: dict[str, tuple[str, dict[str, Any]]] = {}
    for step in steps:
        if _fed_by_sensor(pipeline, step):
            continue  # the sensor hands it the file it found: the step's own value is a default
        try:
            path = _local_source(pipeline, step, variables)
        except Exception:
            continue
        if path is None or _written_by_pipeline(pipeline, path, variables):
            continue
        where = " (rendered with the first partition key)" if has_template(step.value) else ""
        if "://" in path:
            if check_remote and not _remote_exists(path):
                report(step, "value", f"source not found: {path}{where}")
            continue
        if any(c in path for c in "*?["):
            if not globlib.glob(path, recursive=True):
                report(step, "value", f"source not found: no file matches {path}{where}")
                continue
        elif not os.path.exists(path):
            report(step, "value", f"source not found: {path}{where}")
            continue
        readable[step.name] = (path, render_params(dict(step.params), variables))
    if not readable:
        return known
    import duckdb

    conn = duckdb.connect()
    try:
        for step in steps:
            if step.name not in readable:
                continue
            path, params = readable[step.name]
            try:
                rel = pandas_duckdb.read_source(conn, path, **params)
                schema = list(zip(rel.columns, [str(t) for t in rel.types], strict=True))
            except Exception:
                continue
            for dataset in step.outputs.values():
                known[dataset] = schema
    finally:
        conn.close()
    return known


def _remote_exists(path: str) -> bool:
    try:
        fs = paths.fs_for(path)
        return bool(fs.glob(path)) if any(c in path for c in "*?[") else bool(fs.exists(path))
    except Exception:
        return False


def check_columns(pipeline: PipelineConfig, steps: list[Step], known: dict[str, Schema], report: Report) -> None:
    """Bind every SQL transform whose inputs' schemas are known; report unknown columns."""
    if not known:
        return
    variables = partition_variables(pipeline) or sample_variables(pipeline.partitions is not None)
    import duckdb

    conn = duckdb.connect()
    try:
        # Steps come in config order, a producer may come after its consumer: loop to a fixpoint.
        pending = [s for s in steps if s.layer == "transform" and s.type == "sql" and s.value.strip()]
        progress = True
        while pending and progress:
            progress = False
            for step in list(pending):
                if not all(ds in known for ds in step.inputs.values()):
                    continue
                pending.remove(step)
                progress = True
                schema = _bind(conn, pipeline, step, known, variables, report)
                if schema is not None:
                    for dataset in step.outputs.values():
                        known[dataset] = schema
    finally:
        conn.close()


def _bind(
    conn: Any, pipeline: PipelineConfig, step: Step, known: dict[str, Schema], variables: dict[str, Any], report: Report
) -> Schema | None:
    import duckdb

    engine = pipeline.step_engine(step)
    dialect = dialect_for(engine)
    try:
        sql = render_sql(step.value, variables, dialect)
    except Exception:
        return None
    if dialect == "spark":
        return _qualify_spark(step, sql, known, report)
    schema = f"odibi_check_{abs(hash(step.name))}"
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    conn.execute(f'SET schema = "{schema}"')
    try:
        for logical, dataset in step.inputs.items():
            cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in known[dataset]) or "_ INTEGER"
            conn.execute(f"CREATE OR REPLACE TABLE {quote_ident(logical)} ({cols})")
        try:
            rel = conn.sql(sql)
            if rel is None:
                return None
            return list(zip(rel.columns, [str(t) for t in rel.types], strict=True))
        except duckdb.BinderException as exc:
            report(step, "value", _binder_message(str(exc), step, known))
            return None
        except duckdb.Error:
            return None  # anything else (a function DuckDB lacks, a parser quirk) is the run's to report
    finally:
        conn.execute("SET schema = 'main'")
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _binder_message(text: str, step: Step, known: dict[str, Schema]) -> str:
    """DuckDB's binder error as ``column 'idd' not found in input 'data'; did you mean 'id'?``."""
    first = text.splitlines()[0].removeprefix("Binder Error: ")
    m = _BINDER_COLUMN.search(text)
    if m is None:
        return f"SQL does not bind against its inputs' columns: {first}"
    column = m.group("col").split(".")[-1]
    by_input = {logical: [c for c, _ in known[ds]] for logical, ds in step.inputs.items()}
    candidates = [c for cols in by_input.values() for c in cols]
    owner = next((i for i in by_input if m.group("col").startswith(f"{i}.")), None)
    if owner is None:
        owner = next(iter(by_input)) if len(by_input) == 1 else None
    where = f" in input '{owner}'" if owner else f" in inputs {', '.join(repr(i) for i in by_input)}"
    close = difflib.get_close_matches(column, candidates, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f" (columns: {', '.join(candidates[:20])})"
    return f"column '{column}' not found{where}{hint}"


def _qualify_spark(step: Step, sql: str, known: dict[str, Schema], report: Report) -> Schema | None:
    import sqlglot
    from sqlglot.errors import OptimizeError, SqlglotError
    from sqlglot.optimizer.qualify import qualify

    schema = {logical: {c: "STRING" for c, _ in known[ds]} for logical, ds in step.inputs.items()}
    try:
        expression = sqlglot.parse_one(sql, read="spark")
        qualified = qualify(expression, schema=schema, dialect="spark", validate_qualify_columns=True)
    except OptimizeError as exc:
        m = re.search(r"Column '(?P<col>[^']+)' could not be resolved", str(exc))
        if m is not None:
            column = m.group("col").split(".")[-1]
            candidates = [c for cols in schema.values() for c in cols]
            close = difflib.get_close_matches(column, candidates, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            report(step, "value", f"column '{column}' not found in the step's inputs{hint}")
        return None
    except SqlglotError:
        return None
    selects = getattr(qualified, "selects", None)
    if not selects or any(s.alias_or_name == "*" for s in selects):
        return None
    return [(s.alias_or_name, "VARCHAR") for s in selects]


def check_io_params(pipeline: PipelineConfig, step: Step, report: Report) -> None:
    """Reader/writer params of a file ingest or store on the pandas engine must be ones its
    format accepts (the format from ``format``/``source_type`` or the path's extension)."""
    kind = {"ingest": "reader", "store": "writer", "publish": "writer"}.get(step.layer)
    engine = pipeline.step_engine(step)
    if kind is None or engine != "pandas" or step.type in ("function", "api", "sql") or "connection" in step.params:
        return
    explicit = step.params.get("format") or step.params.get("source_type")
    try:
        known = explicit or format_of_extension(step.value)
        fmt = pandas_duckdb.source_format(step.value, step.params) if known else None
    except ValueError as exc:
        report(step, "params.format" if explicit else "value", str(exc))
        return
    accepted = pandas_duckdb.accepted_params(fmt, kind) if fmt else None
    if accepted is None:
        return
    for key in step.params:
        if key not in accepted:
            report(
                step, f"params.{key}", f"unknown {fmt} {kind} param '{key}'; supported: {', '.join(sorted(accepted))}"
            )


def compatibility_warnings(
    pipeline: PipelineConfig, schemas: dict[str, list[tuple[str, str]]]
) -> list[tuple[str | None, str, str]]:
    """Where an ODIBI-form config relies on a documented difference from ODIBI CORE (README):
    a store that writes timestamps to JSON or booleans to CSV (known from the schemas that
    validation propagated), and CSV config rows skipped for enabled = 0."""
    out: list[tuple[str | None, str, str]] = []
    if pipeline.disabled_csv_rows:
        out.append(
            (
                None,
                "enabled",
                f"{pipeline.disabled_csv_rows} row(s) with enabled = 0 are skipped; ODIBI CORE's "
                "CSV loader runs them (validate/run --all-rows includes them)",
            )
        )
    for step in pipeline.steps:
        if step.layer not in SINK_LAYERS or pipeline.step_engine(step) != "pandas" or "connection" in step.params:
            continue
        try:
            fmt = (
                pandas_duckdb.source_format(step.value, step.params)
                if format_of_extension(step.value) or step.params.get("format") or step.params.get("source_type")
                else None
            )
        except ValueError:
            continue
        types = [t.upper() for ds in step.inputs.values() for _, t in schemas.get(ds, [])]
        if (
            fmt in ("json", "jsonl")
            and "date_format" not in step.params
            and any(t.startswith(("TIMESTAMP", "DATE")) for t in types)
        ):
            out.append(
                (
                    step.name,
                    "value",
                    "timestamps are written as ISO 8601 text; ODIBI CORE's pandas engine "
                    "writes epoch milliseconds (params.date_format: epoch writes those)",
                )
            )
        elif fmt == "csv" and "BOOLEAN" in types:
            out.append(
                (step.name, "value", "booleans are written true/false; ODIBI CORE's pandas engine writes True/False")
            )
    return out


def check_data(pipelines: list[PipelineConfig], *, remote: bool = False) -> None:
    """Check the data of validated ``pipelines`` before a run; raises ``ConfigValidationError``
    listing every problem (file, line, step, field). Sets each pipeline's compatibility warnings."""
    problems: list[Problem] = []
    for pipeline in pipelines:
        file = str(pipeline.source) if pipeline.source is not None else "<config>"

        def report(step: Step, field: str, message: str, file: str = file) -> None:
            problems.append(Problem(file, step.name, field, message, step.line))

        before = len(problems)
        for step in pipeline.steps:
            check_io_params(pipeline, step, report)
        if len(problems) > before:
            continue
        schemas = check_sources(pipeline, pipeline.steps, report, check_remote=remote)
        check_columns(pipeline, pipeline.steps, schemas, report)
        if pipeline.odibi_form:
            pipeline.with_warnings(compatibility_warnings(pipeline, schemas))
    if problems:
        raise ConfigValidationError(problems)
