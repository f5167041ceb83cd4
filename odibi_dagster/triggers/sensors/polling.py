"""ODIBI's INTERVAL / INCREMENTAL streaming as a sensor polling a SQL source past a watermark."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import dagster as dg

from odibi_dagster.config.models import PollingSensorConfig, Step
from odibi_dagster.config.partitions import build_partitions_def, latest_complete_partition
from odibi_dagster.plan import PipelinePlan
from odibi_dagster.triggers.sensors.common import (
    CURSOR_VERSION,
    NEW_ROWS_TAG,
    SENSOR_TAG,
    WATERMARK_COLUMN_TAG,
    WATERMARK_END_TAG,
    WATERMARK_START_TAG,
    configured_sensor,
    run_in_flight,
    step_run_config,
)


def _jsonable(value: Any) -> Any:
    """A watermark as a JSON value that binds back to the same comparison."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dt.datetime):
        return str(value)  # 'YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]': SQL's timestamp literal form
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def polling_source_url(plan: PipelinePlan, cfg: PollingSensorConfig) -> str:
    """The SQLAlchemy URL a polling sensor queries: ``source`` itself or its connect step's URL
    (``{{ env.NAME }}`` filled in, relative SQLite paths against the config's directory)."""
    from odibi_dagster.config.templating import EnvNamespace, render_text

    url = cfg.source if "://" in cfg.source else plan.pipeline.step(cfg.source).value
    resolved = render_text(url, {"env": EnvNamespace()})
    return plan.resolve_path(resolved)


def poll_watermark(url: str, cfg: PollingSensorConfig, after: Any) -> tuple[Any, int]:
    """``(MAX(watermark_column), COUNT(*))`` of the rows past ``after`` (all rows when None)."""
    import sqlalchemy as sa

    column = sa.column(cfg.watermark_column)
    if cfg.table is not None:
        schema, _, table = cfg.table.rpartition(".")
        source: Any = sa.table(table, column, schema=schema or None)
    else:
        # A ':' in the user's query is text, not a bind parameter.
        source = sa.text(cfg.query.replace(":", r"\:")).columns(column).subquery("odibi_poll")
    col = source.c[cfg.watermark_column]
    stmt = sa.select(sa.func.max(col), sa.func.count()).select_from(source)
    if after is not None:
        stmt = stmt.where(col > sa.bindparam("odibi_after", after))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            high, count = conn.execute(stmt).one()
    finally:
        engine.dispose()
    return _jsonable(high), int(count or 0)


def build_polling_sensor(plan: PipelinePlan, job: Any, cfg: PollingSensorConfig, name: str) -> dg.SensorDefinition:
    """ODIBI's INTERVAL / INCREMENTAL streaming: poll a SQL source past a watermark.

    Each evaluation asks the source for ``MAX(watermark_column)`` over the rows past the
    watermark in the cursor (``start_value`` at first); when there are new rows it starts one
    run for the range ``(watermark_start, watermark_end]`` and moves the cursor to its end.
    The range reaches the ingest step as run config (template variables
    ``watermark_start`` / ``watermark_end``) and run tags. Ranges are processed one at a time,
    in order: no new run is requested while the previous one is queued or running.
    """
    step = plan.pipeline.step(cfg.step)
    pdef = build_partitions_def(plan.pipeline.partitions, plan.name)
    what = f"table {cfg.table}" if cfg.table else "a query"
    where = cfg.source if "://" not in cfg.source else "its source"
    description = (
        f"Polls {what} on {where} for rows with {cfg.watermark_column} past the last "
        f"watermark and runs {plan.name} for them (step '{step.name}')"
    )

    @configured_sensor(cfg, name, job, description)
    def _poll(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        state = json.loads(context.cursor) if context.cursor else None
        start = state["watermark"] if state is not None else _jsonable(cfg.start_value)
        busy = run_in_flight(context.instance, name)
        if busy:
            return dg.SkipReason(f"run {busy} for the previous range is still in progress")
        end, count = poll_watermark(polling_source_url(plan, cfg), cfg, start)
        if count == 0 or end is None:
            return dg.SkipReason(f"no rows with {cfg.watermark_column} past {start!r}")
        key: str | None = None
        if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
            key = latest_complete_partition(pdef, None)
        elif pdef is not None:
            return dg.SkipReason("polling sensors need an unpartitioned or time-partitioned pipeline")
        request = _range_request(plan, step, cfg, name, (start, end, count), key)
        context.log.info(f"odibi: {count} new row(s) in {json.dumps(start)}..{json.dumps(end)}")
        return dg.SensorResult([request], cursor=json.dumps({"v": CURSOR_VERSION, "watermark": end}))

    return _poll


def _range_request(
    plan: PipelinePlan,
    step: Step,
    cfg: PollingSensorConfig,
    name: str,
    found: tuple[Any, Any, int],
    key: str | None,
) -> dg.RunRequest:
    """The run for the new rows ``(start, end]`` (``found`` is start, end and their count)."""
    start, end, count = found
    return dg.RunRequest(
        run_key=f"{cfg.watermark_column}:{json.dumps(start)}..{json.dumps(end)}",
        partition_key=key,
        run_config=step_run_config(plan, step, watermark_start=start, watermark_end=end),
        tags={
            SENSOR_TAG: name,
            WATERMARK_COLUMN_TAG: cfg.watermark_column,
            WATERMARK_START_TAG: json.dumps(start),
            WATERMARK_END_TAG: json.dumps(end),
            NEW_ROWS_TAG: str(count),
        },
    )
