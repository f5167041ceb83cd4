"""What a step asks of Dagster's automation in its ``metadata``: an automation condition
(``automation``), a freshness policy (``freshness``; the pipeline's ``freshness`` too) and a
concurrency pool (``pool``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from odibi_dagster.config.freshness import FreshnessConfig
from odibi_dagster.config.models import Step
from odibi_dagster.config.validation.collector import Collector, loc_to_field, pydantic_message, short
from odibi_dagster.config.validation.policies import valid_timezone

AUTOMATION_FORMS = ("eager", "on_missing", "on_cron:<cron>")
# Dagster's rule for pool names: any non-whitespace characters.
_POOL_NAME = re.compile(r"\S+")


def check_freshness(config: FreshnessConfig, step: Step | None, where: str, col: Collector) -> None:
    """What the model cannot see: the cron, the timezone, and Dagster's own invariants."""
    from odibi_dagster.config.freshness import build_freshness_policy, format_duration
    from odibi_dagster.config.schedules import is_valid_cron

    if config.deadline_cron is not None and not is_valid_cron(config.deadline_cron):
        col.add(step, f"{where}.deadline_cron", f"'{config.deadline_cron}' is not a valid cron expression")
        return
    if not valid_timezone(config.timezone):
        col.add(step, f"{where}.timezone", f"unknown timezone '{config.timezone}'")
        return
    if config.deadline_cron is not None and config.lower_bound_delta is not None:
        from dagster._utils.schedules import get_smallest_cron_interval

        interval = get_smallest_cron_interval(config.deadline_cron)
        if config.lower_bound_delta > interval:
            col.add(
                step,
                f"{where}.lower_bound_delta",
                f"lower_bound_delta ({format_duration(config.lower_bound_delta)}) is longer than the "
                f"shortest interval of '{config.deadline_cron}' ({format_duration(interval)})",
            )
            return
    try:
        build_freshness_policy(config)
    except Exception as exc:  # Dagster's CheckError, e.g. a lower bound longer than the cron's interval
        col.add(step, where, str(exc).removeprefix("Invariant failed. Description: "))


def _check_step_freshness(s: Step, value: Any, col: Collector) -> None:
    if value is None:  # `freshness: null` turns the pipeline's default off for this step
        return
    try:
        config = FreshnessConfig.model_validate(value)
    except ValidationError as exc:
        for err in exc.errors():
            field = loc_to_field(err["loc"])
            col.add(s, "metadata.freshness" + ("" if field == "-" else f".{field}"), pydantic_message(err))
        return
    check_freshness(config, s, "metadata.freshness", col)


def _check_automation(s: Step, value: Any, col: Collector) -> None:
    from odibi_dagster.config.schedules import is_valid_cron

    text = value if isinstance(value, str) else None
    if text is not None and text.startswith("on_cron:"):
        cron = text.split(":", 1)[1].strip()
        if not is_valid_cron(cron):
            col.add(s, "metadata.automation", f"'{cron}' is not a valid cron expression")
    elif text not in ("eager", "on_missing"):
        col.add(s, "metadata.automation", f"unknown automation {short(value)} (valid: {', '.join(AUTOMATION_FORMS)})")


def check_step_automation(s: Step, col: Collector) -> None:
    """``metadata.automation``, ``metadata.freshness`` and ``metadata.pool`` of one step."""
    if "automation" in s.metadata:
        _check_automation(s, s.metadata["automation"], col)
    if "freshness" in s.metadata:
        _check_step_freshness(s, s.metadata["freshness"], col)
    if "pool" in s.metadata:
        pool = s.metadata["pool"]
        if pool is not None and (not isinstance(pool, str) or not _POOL_NAME.fullmatch(pool)):
            col.add(s, "metadata.pool", f"pool {short(pool)} must be a name without spaces (or null: no pool)")
