"""Step details: templates and SQL of values and params, function steps, connections and
secret references, data checks, and each step's retry, owners and tags."""

from __future__ import annotations

import re
from pathlib import Path

from odibi_dagster.config.imports import FunctionImportError, binding_problem, resolve_callable
from odibi_dagster.config.models import DATA_LAYERS, VALID_LAYERS, PipelineConfig, Step
from odibi_dagster.config.validation.automation import check_step_automation
from odibi_dagster.config.validation.collector import Collector
from odibi_dagster.config.validation.policies import check_owners, check_retry, check_tags
from odibi_dagster.config.validation.sql import check_sql, check_templates, walk_strings

# Dagster's names (ops, outputs, checks): letters, digits and underscores.
_DAGSTER_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _check_texts(s: Step, engine: str, partitioned: bool, col: Collector) -> None:
    """Templates in the value and params; a SQL value parses and reads only the inputs."""
    texts_ok = check_templates(s.value, "value", s, partitioned, col)
    for where, text in walk_strings(s.params, "params"):
        check_templates(text, where, s, partitioned, col)
    if s.type == "sql" and s.value.strip() and texts_ok and s.layer != "connect":
        allowed = set(s.inputs) if not col.has_bad(s, "inputs") else None
        if s.layer == "ingest":
            allowed = None  # an ingest query reads its source database's tables, not step inputs
        check_sql(s.value, s, "value", engine, allowed, partitioned, col, any_dialect=s.layer == "ingest")
    if s.type == "sql" and s.layer == "transform" and not s.value.strip():
        col.add(s, "value", "sql step has an empty value (expected a SQL query)")


def _check_function(s: Step, search: list[Path], col: Collector) -> None:
    """A function step's value imports, and the function takes the step's inputs and params."""
    if not s.value.strip():
        col.add(s, "value", "function step has an empty value (expected 'package.module.function')")
        return
    try:
        fn = resolve_callable(s.value, search)
    except FunctionImportError as exc:
        col.add(s, "value", str(exc))
        return
    # A connection's params are known only at run time: such steps are checked then.
    problem = None if "connection" in s.params else binding_problem(fn, list(s.inputs), list(s.params))
    if problem is not None:
        col.add(s, "inputs" if s.inputs and "input" in problem else "value", problem)


def _check_params(s: Step, connect_steps: set[str], col: Collector) -> None:
    """``params.connection`` names a connect step; secret references have their one form."""
    conn = s.params.get("connection")
    if conn is not None and (not isinstance(conn, str) or conn not in connect_steps):
        known = ", ".join(sorted(connect_steps)) or "none"
        col.add(s, "params.connection", f"connection '{conn}' is not a connect step (connect steps: {known})")
    for key, value in s.params.items():
        if (
            isinstance(value, dict)
            and "secret" in value
            and (set(value) != {"secret"} or not isinstance(value["secret"], str))
        ):
            col.add(s, f"params.{key}", 'a secret reference must be exactly {"secret": "ENV_VAR_NAME"}')


def _check_checks(s: Step, engine: str, partitioned: bool, col: Collector) -> None:
    """Data checks: Dagster names, declared once per dataset, SQL over the step's tables."""
    check_names: dict[tuple[str | None, str], int] = {}
    for i, check in enumerate(s.checks):
        if check.name is not None and not _DAGSTER_NAME.match(check.name):
            col.add(
                s,
                f"checks[{i}].name",
                f"check name '{check.name}' may hold only letters, digits and '_' (a Dagster name)",
            )
        target = check.dataset or next(iter(s.outputs.values()), None)
        first = check_names.setdefault((target, check.check_name), i)
        if first != i:
            col.add(
                s,
                f"checks[{i}]",
                f"check '{check.check_name}' is declared twice on the same "
                f"dataset (also checks[{first}]); give one a different 'name'",
            )
        if check.sql is not None:
            allowed = {"data", *s.inputs, *s.outputs}
            check_sql(check.sql, s, f"checks[{i}].sql", engine, allowed, partitioned, col)
        if check.dataset is not None and check.dataset not in s.outputs.values():
            col.add(s, f"checks[{i}].dataset", f"'{check.dataset}' is not an output of this step")
        if s.layer not in DATA_LAYERS and s.layer in VALID_LAYERS:
            col.add(s, f"checks[{i}]", "checks apply to ingest and transform steps (their output datasets)")


def check_step_details(pipeline: PipelineConfig, steps: list[Step], col: Collector) -> None:
    """Everything a step holds beyond its kind, checked in the context of its pipeline."""
    partitioned = pipeline.partitions is not None
    connect_steps = {s.name for s in steps if s.layer == "connect"}
    for s in steps:
        engine = pipeline.step_engine(s)
        _check_texts(s, engine, partitioned, col)
        if s.type == "function":
            _check_function(s, pipeline.module_dirs, col)
        _check_params(s, connect_steps, col)
        _check_checks(s, engine, partitioned, col)
        if s.partition_mapping is not None and not partitioned:
            col.add(s, "partition_mapping", "a partition mapping needs pipeline 'partitions'")
        check_retry(s.retry, s, "retry", col)
        for key in ("owner", "owners"):
            if key in s.metadata:
                check_owners(s.metadata[key], s, f"metadata.{key}", col)
        if "tags" in s.metadata:
            check_tags(s.metadata["tags"], s, "metadata.tags", col)
        check_step_automation(s, col)
