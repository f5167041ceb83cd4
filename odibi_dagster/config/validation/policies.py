"""Retry, owners, tags and timezones: settings a step and the pipeline share, checked by Dagster's rules."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from odibi_dagster.config.models import RetryConfig, Step
from odibi_dagster.config.validation.collector import Collector, short


def check_retry(retry: RetryConfig | None, step: Step | None, where: str, col: Collector) -> None:
    """Dagster's RetryPolicy refuses a backoff or jitter without a delay to grow or jitter."""
    if retry is not None and retry.max_retries > 0 and not retry.delay_seconds:
        for name in ("backoff", "jitter"):
            if getattr(retry, name) is not None:
                col.add(step, f"{where}.{name}", f"{name} needs a delay: set delay_seconds above 0")


def valid_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA timezone."""
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError ('America'), OSError
        return False
    return True


def _valid_owner(owner: Any) -> bool:
    from dagster._core.definitions.utils import is_valid_owner

    # Dagster's own rule, and a team name the translator keeps (letters, digits, '_', '.', '-').
    if not isinstance(owner, str) or not is_valid_owner(owner):
        return False
    return not owner.startswith("team:") or re.fullmatch(r"team:[\w.-]+", owner) is not None


def check_owners(value: Any, step: Step | None, where: str, col: Collector) -> None:
    """Owners are email addresses or ``team:NAME``."""
    owners = [value] if isinstance(value, str) else value
    if not isinstance(owners, list):
        col.add(step, where, f"owners must be a list of emails or 'team:NAME' (got {type(value).__name__})")
        return
    for i, owner in enumerate(owners):
        if not _valid_owner(owner):
            field = where if isinstance(value, str) else f"{where}[{i}]"
            col.add(
                step,
                field,
                f"owner {short(owner)} must be an email address or 'team:NAME' (Dagster rejects other owners)",
            )


def check_tags(value: Any, step: Step | None, where: str, col: Collector) -> None:
    """Tags are a mapping whose keys Dagster accepts (and not its reserved ``dagster/``)."""
    from dagster._utils.tags import VALID_TAG_KEY_EXPLANATION, is_valid_tag_key

    if not isinstance(value, dict):
        col.add(step, where, f"tags must be a mapping of key: value (got {type(value).__name__})")
        return
    for key in value:
        if not isinstance(key, str) or not is_valid_tag_key(key):
            col.add(step, f"{where}.{key}", f"invalid tag key {short(key)}: {VALID_TAG_KEY_EXPLANATION}")
        elif key.startswith("dagster/"):
            col.add(step, f"{where}.{key}", f"tag key '{key}' uses Dagster's reserved prefix 'dagster/'")
