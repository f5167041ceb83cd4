"""Durations (``26h``, ``90m``, ``2d``, ISO 8601 ``PT26H``) and freshness policies.

:class:`FreshnessConfig` is the ``freshness:`` setting (of a pipeline, or a step's
``metadata.freshness``); this module imports no Dagster at the top, since the CLI loads configs
before Dagster. :func:`build_freshness_policy` turns a validated setting into Dagster's
``FreshnessPolicy``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    import dagster as dg

_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
# One or more number+unit parts: `26h`, `90m`, `1h30m`, `1d 12h`.
_SHORT_FORM = re.compile(r"(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+")


def parse_duration(value: Any) -> dt.timedelta:
    """A positive duration from ``26h``, ``90m``, ``2d``, ``1w``, ``1h30m``, ISO 8601 (``PT26H``,
    ``P1DT2H``), a number of seconds, or a ``timedelta``."""
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


#: A duration: ``26h``, ``90m``, ``2d``, ``1h30m``, ISO 8601 (``PT26H``) or seconds.
Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration, json_schema_input_type=str | float)]


class FreshnessConfig(BaseModel):
    """How fresh an asset must be: Dagster's ``FreshnessPolicy``.

    Either a time window (``fail_window``, optionally ``warn_window``: the asset warns once its
    last materialization is older than ``warn_window`` and fails once older than
    ``fail_window``), or a cron deadline (``deadline_cron`` with ``lower_bound_delta``: the asset
    must materialize in the ``lower_bound_delta`` before each tick of the cron).
    """

    model_config = ConfigDict(extra="forbid")

    fail_window: Duration | None = Field(None, json_schema_extra={"examples": ["26h", "90m", "2d", "PT26H"]})
    warn_window: Duration | None = Field(None, json_schema_extra={"examples": ["25h"]})
    deadline_cron: str | None = Field(None, json_schema_extra={"examples": ["0 9 * * *"]})
    lower_bound_delta: Duration | None = Field(None, json_schema_extra={"examples": ["1h"]})
    timezone: str = "UTC"

    @field_validator("fail_window", "warn_window", "lower_bound_delta")
    @classmethod
    def _at_least_a_minute(cls, v: dt.timedelta | None) -> dt.timedelta | None:
        if v is not None and v < dt.timedelta(minutes=1):
            raise ValueError(f"{format_duration(v)} is shorter than 1 minute, Dagster's smallest freshness window")
        return v

    @field_validator("warn_window")
    @classmethod
    def _warn_before_fail(cls, v: dt.timedelta | None, info: ValidationInfo) -> dt.timedelta | None:
        fail = info.data.get("fail_window")
        if v is not None and fail is not None and v >= fail:
            raise ValueError(
                f"warn_window ({format_duration(v)}) must be shorter than fail_window ({format_duration(fail)})"
            )
        return v

    @model_validator(mode="after")
    def _one_form(self) -> FreshnessConfig:
        if (self.fail_window is None) == (self.deadline_cron is None):
            raise ValueError("freshness needs exactly one of 'fail_window' or 'deadline_cron'")
        if self.deadline_cron is not None and (self.warn_window is not None or self.lower_bound_delta is None):
            raise ValueError("'deadline_cron' goes with 'lower_bound_delta' (and no 'warn_window')")
        if self.fail_window is not None and self.lower_bound_delta is not None:
            raise ValueError("'lower_bound_delta' goes with 'deadline_cron', not with 'fail_window'")
        return self


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
