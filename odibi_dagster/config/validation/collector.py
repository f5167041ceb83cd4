"""Where problems are collected: one :class:`Collector` per config, and the wording helpers
(pydantic errors as ODIBI-style messages, short values, case hints)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from odibi_dagster.config.errors import Problem
from odibi_dagster.config.loaders import RawPipeline
from odibi_dagster.config.models import Step

_SENSOR_TAGS = {"file_watch", "incremental", "interval"}


def loc_to_field(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path: ``sensors[0].path``, ``inputs.data``."""
    out = ""
    prev: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or "(" in str(part):
            pass  # pydantic's validator/union markers, e.g. ``function-after[...]``
        elif isinstance(prev, int) and part in _SENSOR_TAGS and out.startswith("sensors"):
            pass  # the discriminator tag of a sensor
        else:
            out += f".{part}" if out else str(part)
        prev = part
    return out or "-"


def short(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pydantic_message(err: dict[str, Any]) -> str:
    """One pydantic error in words, saying what was found."""
    kind = err.get("type", "")
    if kind == "missing":
        return f"missing required field '{err['loc'][-1]}'" if err.get("loc") else "missing required field"
    if kind == "extra_forbidden":
        return f"unknown key '{err['loc'][-1]}'"
    msg = str(err.get("msg", "invalid value"))
    if kind.startswith("value_error") or kind.startswith("assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if ("input" in err and not isinstance(err["input"], dict | list)) or kind.endswith("_type"):
        # Say what was found: "Input should be a valid string (got int: 5)".
        return f"{msg} (got {type(err.get('input')).__name__}: {short(err.get('input'))})"
    return msg


def case_hint(value: str, valid: Iterable[str], what: str) -> str:
    """A hint for a value that is valid once lower-cased ('Ingest')."""
    if value.strip().lower() in valid:
        return f"; {what} names are lower-case: use '{value.strip().lower()}'"
    return ""


def field_root(field: str | None) -> str | None:
    return re.split(r"[.\[]", field, maxsplit=1)[0] if field else None


class Collector:
    """The problems of one config, and what earlier checks learnt that later ones need."""

    def __init__(self, raw: RawPipeline):
        self.file = raw.file
        self.lines = raw.lines
        self.key_lines = raw.key_lines
        self.problems: list[Problem] = list(raw.problems)
        self.step_lines: dict[str, int] = {}
        # step -> top-level fields whose shape was wrong: derived problems on them are noise.
        self.bad_fields: dict[str, set[str]] = {}
        self.layer_defaulted: set[str] = set()  # steps without 'layer' (ODIBI's default: transform)
        self.maybe_produced: set[str] = set()  # datasets named by malformed or dropped steps
        self.disabled_outputs: dict[str, str] = {}  # dataset -> disabled step producing it

    def add(
        self, step: Step | str | None, field: str | None, message: str, line: int | None = None, *, shape: bool = False
    ) -> None:
        """Record a problem of ``step`` (None: the pipeline) at ``field``; the line is found."""
        if isinstance(step, Step):
            line = line if line is not None else step.line
            step = step.name
        if not shape and step is not None and field_root(field) in self.bad_fields.get(step, ()):
            return  # already reported as a wrong shape; a second problem would only confuse
        if line is None and step is not None:
            line = self.step_lines.get(step)
        if line is None and step is None and field:  # a pipeline setting: the line of its key
            line = self.key_lines.get(str(field_root(field)))
        self.problems.append(Problem(self.file, step, field, message, line))

    def has_bad(self, step: Step, field: str) -> bool:
        return field in self.bad_fields.get(step.name, ())
