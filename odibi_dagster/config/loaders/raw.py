"""What every loader returns: a :class:`RawPipeline` (a plain document, where it came from
and the line of each step), or one that only carries the problem that stopped the read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odibi_dagster.config.errors import Problem


@dataclass
class RawPipeline:
    """A config as read from its source, before validation."""

    file: str
    document: dict[str, Any] | None
    lines: dict[int, int] = field(default_factory=dict)  # step index -> line number
    problems: list[Problem] = field(default_factory=list)
    default_name: str | None = None
    key_lines: dict[str, int] = field(default_factory=dict)  # top-level key of a document -> line number
    # ODIBI's own forms (a bare list of steps, a SQLite or CSV table) resolve relative paths
    # against ODIBI's project root; pipeline documents against their own folder.
    odibi_format: bool = False
    # Rows of a CSV config table skipped for enabled = 0 (ODIBI's CSV loader would run them).
    disabled_csv_rows: int = 0


def failed(file: str | Path, message: str, line: int | None = None, *, field: str | None = None) -> RawPipeline:
    """A config that could not be read: no document, one problem."""
    return RawPipeline(str(file), None, problems=[Problem(str(file), None, field, message, line)])


def empty(p: Path) -> RawPipeline:
    """A config without steps, in ODIBI's words."""
    return failed(p, "Config is empty - no steps found", field="steps")


def parsed(
    p: Path,
    data: Any,
    not_a_config: str,
    step_lines: Callable[[dict[str, Any]], dict[int, int]],
    key_lines: dict[str, int],
) -> RawPipeline:
    """A parsed JSON/YAML value as a raw pipeline: a bare list is ODIBI's form (its steps), an
    object a pipeline document; anything else fails with ``not_a_config``."""
    if isinstance(data, list):
        doc = {"steps": data}
    elif isinstance(data, dict):
        doc = data
    else:
        return failed(p, not_a_config)
    return RawPipeline(
        str(p), doc, step_lines(doc), default_name=p.stem, key_lines=key_lines, odibi_format=isinstance(data, list)
    )
