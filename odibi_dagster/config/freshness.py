"""Durations (``26h``, ``90m``, ``2d``, ISO 8601 ``PT26H``) and freshness policies.

``parse_duration`` is used by the config models, so this module imports no Dagster at the
top: the CLI loads configs before Dagster. :func:`build_freshness_policy` turns a validated
``freshness:`` setting into Dagster's ``FreshnessPolicy``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

    from odibi_dagster.config.models import FreshnessConfig

_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
# One or more number+unit parts: `26h`, `90m`, `1h30m`, `1d 12h`.
_SHORT_FORM = re.compile(r"(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+")


def parse_duration(value: Any) -> dt.timedelta:
    """A positive duration from ``26h``, ``90m``, ``2d``, ``1w``, ``1h30m``, ISO 8601 (``PT26H``,
    ``P1DT2H``), a number of seconds, or a ``timedelta``."""
    from pydantic import TypeAdapter, ValidationError

    duration: dt.timedelta | None = None
    if isinstance(value, dt.timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        duration = dt.timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if _SHORT_FORM.fullmatch(text):
            duration = dt.timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text)))
        else:
            try:  # pydantic's own timedelta rules: ISO 8601 and [D ]HH:MM:SS
                duration = TypeAdapter(dt.timedelta).validate_python(value.strip())
            except ValidationError:
                duration = None
    if duration is None:
        raise ValueError(f"{value!r} is not a duration (use e.g. 26h, 90m, 2d, 1h30m or ISO 8601 like PT26H)")
    if duration <= dt.timedelta(0):
        raise ValueError(f"{value!r} is not a positive duration")
    return duration


def format_duration(value: dt.timedelta) -> str:
    """``timedelta(hours=26)`` as ``26h``, ``timedelta(minutes=90)`` as ``1h30m``, two days as ``2d``."""
    seconds = int(value.total_seconds())
    if seconds and seconds % 86_400 == 0:
        return f"{seconds // 86_400}d"
    parts = []
    for unit, size in (("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def build_freshness_policy(config: FreshnessConfig) -> dg.FreshnessPolicy:
    """Dagster's ``FreshnessPolicy`` of a ``freshness:`` setting: a time window
    (``fail_window``/``warn_window``) or a cron deadline (``deadline_cron``/``lower_bound_delta``).

    Raises Dagster's ``CheckError`` for what Dagster refuses (validation reports it)."""
    import dagster as dg

    if config.deadline_cron is not None:
        assert config.lower_bound_delta is not None  # the model requires it with a cron
        return dg.FreshnessPolicy.cron(
            deadline_cron=config.deadline_cron, lower_bound_delta=config.lower_bound_delta, timezone=config.timezone
        )
    assert config.fail_window is not None  # the model requires one of the two forms
    return dg.FreshnessPolicy.time_window(fail_window=config.fail_window, warn_window=config.warn_window)
