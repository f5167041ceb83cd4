"""Dagster partitions from a pipeline's ``partitions:`` settings."""

from __future__ import annotations

import dagster as dg

from odibi_dagster.config.models import PartitionsConfig

TIME_PARTITIONS: dict[str, type[dg.TimeWindowPartitionsDefinition]] = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}


def dynamic_partitions_name(pipeline: str, cfg: PartitionsConfig | None = None) -> str:
    """The name of a pipeline's dynamic partitions (shared by its assets and sensors)."""
    return (cfg.name if cfg is not None and cfg.name else None) or f"{pipeline}__files"


def build_partitions_def(cfg: PartitionsConfig | None, pipeline: str) -> dg.PartitionsDefinition | None:
    """The PartitionsDefinition for ``cfg`` (raises ``ValueError`` on bad settings)."""
    if cfg is None:
        return None
    if cfg.type in TIME_PARTITIONS:
        if not cfg.start:
            raise ValueError(f"{cfg.type} partitions need a 'start' date")
        kwargs: dict = {"start_date": cfg.start, "timezone": cfg.timezone, "end_offset": cfg.end_offset}
        if cfg.end:
            kwargs["end_date"] = cfg.end
        if cfg.fmt:
            kwargs["fmt"] = cfg.fmt
        pdef = TIME_PARTITIONS[cfg.type](**kwargs)
        if cfg.end and pdef.end is not None and pdef.end <= pdef.start:
            raise ValueError(f"partition end '{cfg.end}' is not after start '{cfg.start}'")
        return pdef
    if cfg.type == "static":
        if not cfg.values:
            raise ValueError("static partitions need a non-empty 'values' list")
        if len(set(cfg.values)) != len(cfg.values):
            dupes = sorted({v for v in cfg.values if cfg.values.count(v) > 1})
            raise ValueError(f"static partition values are not unique: {dupes}")
        return dg.StaticPartitionsDefinition(list(cfg.values))
    if cfg.type == "dynamic":
        return dg.DynamicPartitionsDefinition(name=dynamic_partitions_name(pipeline, cfg))
    raise ValueError(f"unknown partitions type '{cfg.type}'")


def is_time_partitioned(cfg: PartitionsConfig | None) -> bool:
    return cfg is not None and cfg.type in TIME_PARTITIONS
