"""SQL and templates: every template uses known variables, and SQL parses in the engine's
dialect and reads only the step's inputs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from odibi_dagster.config import load_cache
from odibi_dagster.config.models import Step
from odibi_dagster.config.sql import dialect_for, parse_sql, referenced_tables
from odibi_dagster.config.templating import (
    KNOWN_VARIABLES,
    PARTITION_VARIABLES,
    UnsafeTemplate,
    has_template,
    render_sql,
    sample_variables,
    template_variables,
)
from odibi_dagster.config.validation.collector import Collector

if TYPE_CHECKING:
    import sqlglot

# An ingest query runs on its source database (SQLite, Postgres, SQL Server...): any dialect may parse it.
SOURCE_DIALECTS = ("sqlite", "postgres", "mysql", "tsql", "oracle", "snowflake", "bigquery")


def check_templates(text: str, where: str, step: Step, partitioned: bool, col: Collector) -> bool:
    """Check the variables of one template string; False when it cannot be rendered."""
    if not has_template(text):
        return True
    from jinja2 import TemplateSyntaxError  # only for text with a template: most has none

    try:
        used = template_variables(text)
    except TemplateSyntaxError as exc:
        col.add(step, where, f"template syntax error: {exc.message} (line {exc.lineno})")
        return False
    ok = True
    for var in sorted(used - KNOWN_VARIABLES):
        col.add(step, where, f"unknown template variable '{var}' (known: {', '.join(sorted(KNOWN_VARIABLES))})")
        ok = False
    if not partitioned:
        for var in sorted(used & PARTITION_VARIABLES):
            col.add(step, where, f"template variable '{var}' is only defined when the pipeline has partitions")
            ok = False
    return ok


def walk_strings(obj: Any, prefix: str) -> Iterable[tuple[str, str]]:
    """Every string inside ``obj`` (nested dicts/lists) with its field path."""
    if isinstance(obj, str):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_strings(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_strings(v, f"{prefix}[{i}]")


def _parse_error(exc: sqlglot.errors.SqlglotError) -> str:
    """The first line of a parse error, naming the offending token when sqlglot knows it."""
    first = str(exc).splitlines()[0] if str(exc) else "syntax error"
    errors = getattr(exc, "errors", None) or []
    if errors and errors[0].get("highlight"):
        # Name the offending token: "Unexpected token at 'FRM' (line 1, column 10)".
        e = errors[0]
        where = f"(line {e.get('line')}, column {e.get('col')})"
        first = f"{e.get('description') or 'syntax error'} at '{e['highlight']}' {where}"
    return re.sub(r"<class 'sqlglot\.[\w.]*?(\w+)'>", r"\1", first)  # "missing for <class '...Where'>"


def check_sql(
    sql: str,
    step: Step,
    where: str,
    engine: str,
    allowed: set[str] | None,
    partitioned: bool,
    col: Collector,
    *,
    any_dialect: bool = False,
) -> None:
    """SQL must parse in the engine's dialect and read only ``allowed`` tables (None: skip that part)."""
    dialect = dialect_for(engine)
    try:
        rendered = render_sql(sql, sample_variables(partitioned), dialect)
    except UnsafeTemplate as exc:
        col.add(step, where, f"SQL template is not safe: {exc}")
        return
    except Exception as exc:  # e.g. {{ env.A.B }}: the template is fine, its rendering is not
        col.add(step, where, f"SQL cannot be rendered: {type(exc).__name__}: {exc}")
        return
    outcome = sql_outcome(rendered, dialect, any_dialect)
    if outcome.error is not None:
        if not outcome.other_dialect:
            col.add(step, where, f"SQL does not parse ({dialect} dialect): {outcome.error}")
        return
    if allowed is None:
        return
    # DuckDB and Spark resolve table names case-insensitively.
    folded = {a.lower() for a in allowed}
    for table in sorted(outcome.tables):
        if table.lower() not in folded:
            names = ", ".join(sorted(allowed)) or "none"
            col.add(step, where, f"SQL names table '{table}' which is not one of the step's inputs ({names})")


@dataclass(frozen=True)
class SqlOutcome:
    """What parsing one rendered statement told validation."""

    tables: tuple[str, ...] = ()
    error: str | None = None  # the message when the SQL does not parse in its dialect
    other_dialect: bool = False  # it does not parse in its dialect, but in one of a source database's


def sql_outcome(rendered: str, dialect: str, any_dialect: bool = False) -> SqlOutcome:
    """The tables ``rendered`` reads or its parse error, from the on-disk cache when this SQL was
    seen before (see :mod:`~odibi_dagster.config.load_cache`), else by parsing it."""
    cache = load_cache.current()
    key = load_cache.cache_key("sql", dialect, str(any_dialect), rendered)
    stored = cache.get(key)
    if stored is not None:
        try:
            tables, error, other = json.loads(stored)
            return SqlOutcome(tuple(tables), error, bool(other))
        except (ValueError, TypeError):
            pass  # damaged: parse again
    found = _parse_outcome(rendered, dialect, any_dialect)
    cache.put(key, json.dumps([found.tables, found.error, found.other_dialect]))
    return found


def _parse_outcome(rendered: str, dialect: str, any_dialect: bool) -> SqlOutcome:
    import sqlglot  # only on a cache miss: the import alone is 0.1 s of a load

    try:
        statements = parse_sql(rendered, dialect)
    except sqlglot.errors.SqlglotError as exc:  # ParseError, TokenError (an unclosed quote)
        other = any_dialect and any(_parses(rendered, d) for d in SOURCE_DIALECTS)
        return SqlOutcome(error=_parse_error(exc), other_dialect=other)
    except RecursionError:
        return SqlOutcome(error="nested too deeply")
    return SqlOutcome(tables=tuple(sorted(referenced_tables(statements, dialect))))


def _parses(sql: str, dialect: str) -> bool:
    try:
        parse_sql(sql, dialect)
    except Exception:
        return False
    return True
