"""Cron and interval rules of ``schedule:``, shared by validation and the schedule builders."""

from __future__ import annotations

import re

# Dagster's own cron parser (the one its schedules use), so validation and the
# daemon agree on what a valid expression is.
from dagster._utils.schedules import is_valid_cron_string

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def is_valid_cron(expr: str) -> bool:
    """Whether Dagster accepts ``expr`` as a cron schedule."""
    try:
        return bool(is_valid_cron_string(expr))
    except Exception:
        return False


def interval_seconds(every: str | int) -> int:
    """Seconds of ODIBI's interval mode: ``300``, ``"300s"``, ``"5m"``, ``"1h"``."""
    if isinstance(every, bool):
        raise ValueError(f"'{every}' is not an interval")
    if isinstance(every, int):
        seconds = every
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(s|sec|m|min|h|hr|d)?\s*", str(every))
        if not m:
            raise ValueError(f"'{every}' is not an interval (use e.g. 300, '300s', '5m', '1h')")
        seconds = int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 30:
        raise ValueError(f"interval of {seconds}s is shorter than Dagster's 30s minimum tick interval")
    return seconds
