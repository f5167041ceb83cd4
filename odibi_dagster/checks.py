"""Config-declared data checks (``checks:`` on a step) as Dagster asset checks.

Checks run inside the step right after its datasets are persisted, with DuckDB over
the persisted files (whatever engine produced them), so a blocking check stops
downstream steps before they start.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from odibi_dagster.config.models import CheckConfig, Step
from odibi_dagster.config.templating import quote_ident, render_sql, sql_literal
from odibi_dagster.engines.base import DatasetRef
from odibi_dagster.observe.metadata import sample_markdown
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet

FAILING_SAMPLE_ROWS = 5


def check_target(step: Step, check: CheckConfig) -> str:
    """The dataset a check applies to: ``dataset:`` or the step's first output."""
    return check.dataset or next(iter(step.outputs.values()))


def check_spec(
    step: Step, check: CheckConfig, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition | None = None
) -> dg.AssetCheckSpec:
    """The AssetCheckSpec of one configured check; ``severity: error`` makes it blocking.

    On a partitioned pipeline the check is partitioned like its asset, so every partition has its
    own result (the UI shows one per partition, and a blocking check gates each partition).
    """
    with warnings.catch_warnings():  # partitioned checks are a preview in Dagster 1.13; we want them
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name=check.check_name,
            asset=asset_key,
            description=check.description or f"{check.kind} check from the ODIBI config of step '{step.name}'",
            blocking=check.severity == "error",
            partitions_def=partitions_def,
        )


def partition_check_events(
    context: dg.AssetExecutionContext,
    check_key: dg.AssetCheckKey,
    results: Sequence[tuple[str, dg.AssetCheckResult]],
    blocking: bool,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """The evaluations of one check over a range of partitions, one per ``(partition, result)``.

    Dagster attaches a check result to the run's partition, and a range run has none: so each
    result becomes the evaluation of its own partition, against that partition's materialization,
    after the check's (``Nothing``) output, as Dagster orders them.
    """
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key))
    for partition, result in results:
        yield dg.AssetCheckEvaluation(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=result.passed,
            metadata=result.metadata,
            target_materialization_data=_target_materialization(context, check_key.asset_key, partition),
            severity=result.severity,
            description=result.description,
            blocking=blocking,
            partition=partition,
        )


def _target_materialization(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, partition: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The partition's latest materialization: the one the step reported just before its checks."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=records[0].run_id, storage_id=records[0].storage_id, timestamp=records[0].timestamp
    )


def run_check(
    check: CheckConfig,
    ref: DatasetRef,
    inputs: dict[str, DatasetRef],
    asset_key: dg.AssetKey,
    variables: Mapping[str, Any] | None = None,
) -> dg.AssetCheckResult:
    """Evaluate ``check`` over a persisted dataset.

    ``variables`` render a ``sql`` check's template, as a step's SQL is rendered. A check
    that cannot be evaluated (its query fails) is a failed check, never an exception: a
    ``warn`` check then never fails its step, and an ``error`` check blocks as it would
    on failing rows.
    """
    from odibi_dagster.engines.pandas_duckdb import PandasDuckDBContext

    ctx = PandasDuckDBContext()
    error: str | None = None
    try:
        ctx.register_temp("data", ref)
        for name, input_ref in inputs.items():
            if name != "data":
                ctx.register_temp(name, input_ref)
        passed, failing, sample, extra = _evaluate(ctx, check, variables or {})
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        passed, failing, sample, extra = False, 0, None, {}
    finally:
        ctx.close()
    metadata: dict[str, Any] = {
        **OdibiMetadataSet(check=check.kind, check_error=error),
        "failing_rows": dg.MetadataValue.int(int(failing)),
        **extra,
    }
    if sample is not None and len(sample):
        metadata["failing_sample"] = dg.MetadataValue.md(sample_markdown(sample, rows=FAILING_SAMPLE_ROWS))
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check.check_name,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR if check.severity == "error" else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def _failing(ctx: Any, where_sql: str) -> tuple[int, Any]:
    count = ctx.execute_sql(f"SELECT COUNT(*) FROM data WHERE {where_sql}").fetchall()[0][0]
    sample = ctx.execute_sql(f"SELECT * FROM data WHERE {where_sql} LIMIT {FAILING_SAMPLE_ROWS}").df()
    return int(count), sample


def _evaluate(ctx: Any, check: CheckConfig, variables: Mapping[str, Any]) -> tuple[bool, int, Any, dict[str, Any]]:
    kind = check.kind
    if kind == "not_null":
        cond = " OR ".join(f"{quote_ident(c)} IS NULL" for c in check.not_null or [])
        failing, sample = _failing(ctx, cond)
        return failing == 0, failing, sample, {}
    if kind == "unique":
        cols = ", ".join(quote_ident(c) for c in check.unique or [])
        dupes = f"SELECT {cols}, COUNT(*) AS n FROM data GROUP BY {cols} HAVING COUNT(*) > 1"
        failing = ctx.execute_sql(f"SELECT COALESCE(SUM(n), 0) FROM ({dupes})").fetchall()[0][0]
        sample = ctx.execute_sql(f"{dupes} ORDER BY n DESC LIMIT {FAILING_SAMPLE_ROWS}").df()
        return int(failing) == 0, int(failing), sample, {}
    if kind == "accepted_values":
        av = check.accepted_values
        assert av is not None
        values = ", ".join(sql_literal(v) for v in av.values)
        col = quote_ident(av.column)
        failing, sample = _failing(
            ctx,
            f"{col} IS NOT NULL AND CAST({col} AS VARCHAR) NOT IN "
            f"({', '.join(sql_literal(str(v)) for v in av.values)})",
        )
        return failing == 0, failing, sample, {"accepted_values": dg.MetadataValue.text(values)}
    if kind == "row_count":
        bounds = check.row_count
        assert bounds is not None
        rows = int(ctx.execute_sql("SELECT COUNT(*) FROM data").fetchall()[0][0])
        ok = (bounds.min is None or rows >= bounds.min) and (bounds.max is None or rows <= bounds.max)
        return (
            ok,
            0 if ok else rows,
            None,
            {
                "row_count": dg.MetadataValue.int(rows),
                "min": bounds.min if bounds.min is not None else "-",
                "max": bounds.max if bounds.max is not None else "-",
            },
        )
    if kind == "expected_columns":
        actual = [c[0] for c in ctx.execute_sql("SELECT * FROM data LIMIT 0").description]
        missing = [c for c in check.expected_columns or [] if c not in actual]
        return (
            not missing,
            len(missing),
            None,
            {"missing_columns": dg.MetadataValue.json(missing), "actual_columns": dg.MetadataValue.json(actual)},
        )
    if kind == "sql":
        assert check.sql is not None
        query = render_sql(check.sql, variables)  # checks run in DuckDB whatever the step's engine
        rel = ctx.execute_sql(query)
        failing = int(rel.aggregate("COUNT(*)").fetchall()[0][0])
        sample = rel.limit(FAILING_SAMPLE_ROWS).df()
        return failing == 0, failing, sample, {"query": dg.MetadataValue.md(f"```sql\n{query}\n```")}
    raise ValueError(f"unknown check kind {kind}")
