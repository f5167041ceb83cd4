"""Dagster partitions from a pipeline's ``partitions:`` settings, and the partition helpers
the schedules and sensors share (latest complete partition, a file's partition key)."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import unquote

import dagster as dg

from odibi_dagster.config.models import PartitionsConfig

TIME_PARTITIONS: dict[str, type[dg.TimeWindowPartitionsDefinition]] = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}

# Dagster refuses partition keys holding these (see dagster's INVALID_PARTITION_SUBSTRINGS).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def dynamic_partitions_name(pipeline: str, cfg: PartitionsConfig | None = None) -> str:
    """The name of a pipeline's dynamic partitions (shared by its assets and sensors)."""
    return (cfg.name if cfg is not None and cfg.name else None) or f"{pipeline}__files"


def _boundary(value: str, cfg: PartitionsConfig) -> dt.datetime | str:
    """``start``/``end`` as a naive datetime in the partitions' timezone.

    Dagster parses strings with the partitions' own format (``%Y-%m-%d-%H:%M`` for
    hourly), so ``start: "2024-01-01"`` would fail for hourly partitions; a datetime is
    accepted by every cadence. An explicit ``fmt`` keeps Dagster's parsing.
    """
    if cfg.fmt:
        return value
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(zoneinfo.ZoneInfo(cfg.timezone)).replace(tzinfo=None)
    return parsed


def build_partitions_def(cfg: PartitionsConfig | None, pipeline: str) -> dg.PartitionsDefinition | None:
    """The PartitionsDefinition for ``cfg`` (raises ``ValueError`` on bad settings)."""
    if cfg is None:
        return None
    if cfg.type in TIME_PARTITIONS:
        if not cfg.start:
            raise ValueError(f"{cfg.type} partitions need a 'start' date")
        kwargs: dict = {"start_date": _boundary(cfg.start, cfg), "timezone": cfg.timezone, "end_offset": cfg.end_offset}
        if cfg.end:
            kwargs["end_date"] = _boundary(cfg.end, cfg)
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
    """Whether ``cfg`` declares hourly/daily/weekly/monthly partitions."""
    return cfg is not None and cfg.type in TIME_PARTITIONS


def latest_complete_partition(pdef: dg.TimeWindowPartitionsDefinition, at: dt.datetime | None) -> str | None:
    """The last partition whose window has ended at ``at`` (now when None), in the partitions' timezone."""
    with dg.partition_loading_context(effective_dt=at):
        return pdef.get_last_partition_key()


# --------------------------------------------------------------------------- files <-> partition keys


def file_partition_key(relative_path: str) -> str:
    """The dynamic partition key of a watched file: its path relative to the watched directory.

    Readable in the UI and reversible (:func:`file_from_partition_key`). Dagster rejects keys
    holding ``...`` or control characters, so those (and ``%``, the escape) are percent-encoded.
    """
    out = relative_path.replace("%", "%25")
    out = _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", out)
    while "..." in out:
        out = out.replace("...", "%2E..", 1)
    return out


def file_from_partition_key(key: str) -> str:
    """The relative path a :func:`file_partition_key` stands for."""
    return unquote(key)


def _fmt_regex(fmt: str) -> re.Pattern[str]:
    """A regex finding strings written with the strftime format ``fmt``."""
    fields = {
        "Y": r"\d{4}",
        "m": r"\d{2}",
        "d": r"\d{2}",
        "H": r"\d{2}",
        "M": r"\d{2}",
        "S": r"\d{2}",
        "y": r"\d{2}",
        "j": r"\d{3}",
        "U": r"\d{2}",
        "W": r"\d{2}",
    }
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            out.append(fields.get(fmt[i + 1], ".+?"))
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    # Not inside a longer run of digits (2024-01-031 is not 2024-01-03).
    return re.compile(r"(?<!\d)" + "".join(out) + r"(?!\d)")


def partition_for_path(
    pdef: dg.PartitionsDefinition, relative_path: str, dynamic_keys: Sequence[str] = ()
) -> str | None:
    """The partition a landed file belongs to, read off its path; None when it names none.

    Time partitions: the last date in the path written in the partitions' format
    (``landing/sales_2024-01-03.csv`` -> ``2024-01-03``). Static partitions: the last path
    component (folder, file name or file stem) equal to one of the values.
    """
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        for found in reversed(_fmt_regex(pdef.fmt).findall(relative_path)):
            try:
                if pdef.has_partition_key(found):
                    return found
            except Exception:  # a date-like string that is not a real date (2024-13-45)
                continue
        return None
    if isinstance(pdef, dg.StaticPartitionsDefinition):
        keys = set(pdef.get_partition_keys())
        path = PurePosixPath(relative_path)
        for part in reversed([*path.parent.parts, path.stem, path.name]):
            if part in keys:
                return part
        return None
    return None
