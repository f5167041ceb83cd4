"""jinja2 templating of step values and params.

Strict: an unknown variable is an error. In SQL every ``{{ ... }}`` renders as a
quoted SQL literal (so a partition key or file name holding quotes or semicolons
cannot change the query), except inside a string literal the SQL already quotes
(``read_csv('data/{{ partition_key }}.csv')``, ``'{{ run_id }}'``), where it renders
as the escaped text of the string; in paths it renders as plain text.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import jinja2
from jinja2 import meta

#: Variables a template may use. ``env`` is a namespace: ``{{ env.NAME }}``.
KNOWN_VARIABLES = frozenset(
    {"partition_key", "partition_start", "partition_end", "partition_keys", "run_id", "pipeline", "env",
     # The range a polling sensor's run reads: (watermark_start, watermark_end]; None outside such runs.
     "watermark_start", "watermark_end"}
)
PARTITION_VARIABLES = frozenset({"partition_key", "partition_start", "partition_end", "partition_keys"})


class MissingEnvVar(KeyError):
    """An ``{{ env.NAME }}`` whose environment variable is not set."""

    def __str__(self) -> str:
        return f"environment variable {self.args[0]!r} is not set"


class EnvNamespace(Mapping[str, str]):
    """``env.NAME`` in templates; records which variables were read so their values are redacted."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = os.environ if environ is None else environ
        self.used: dict[str, str] = {}

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> str:
        try:
            value = self._environ[name]
        except KeyError:
            raise MissingEnvVar(name) from None
        self.used[name] = value
        return value

    def __iter__(self):  # pragma: no cover - mapping protocol
        return iter(self._environ)

    def __len__(self) -> int:  # pragma: no cover - mapping protocol
        return len(self._environ)


def sql_literal(value: Any, dialect: str = "duckdb") -> str:
    """``value`` as a SQL literal that cannot break out of its quotes."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return repr(value) if not isinstance(value, Decimal) else str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return "(" + ", ".join(sql_literal(v, dialect) for v in value) + ")"
    return "'" + _escape_in_string(value, "'", dialect) + "'"


def _escape_in_string(value: Any, quote: str, dialect: str) -> str:
    """``value`` as the text inside a ``quote``-delimited SQL string literal."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        value = value.isoformat()
    text = str(value)
    if dialect == "spark":
        # Spark SQL escapes with backslashes; a doubled quote would be two adjacent literals
        # ('it''s' is "its" in Spark), so escape the quote too.
        return text.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return text.replace(quote, quote + quote)


class _InString:
    """A value rendered inside a string literal of the SQL (see :func:`_mark_in_string`)."""

    def __init__(self, value: Any, quote: str):
        self.value = value
        self.quote = quote


_EXPRESSION = re.compile(r"\{\{([-+]?)(.*?)([-+]?)\}\}", re.DOTALL)
_IN_STRING_FILTERS = {"'": "_odibi_in_single_quotes", '"': "_odibi_in_double_quotes"}


def _mark_in_string(sql: str, dialect: str) -> str:
    """Rewrite ``{{ x }}`` inside SQL string literals to ``{{ (x) | _odibi_in_..._quotes }}``.

    Scans the template text for string literals ('...' everywhere, "..." too in Spark
    SQL), skipping comments, quoted identifiers and other jinja tags.
    """
    string_quotes = "'\"" if dialect == "spark" else "'"
    ident_quotes = "`" if dialect == "spark" else '"`'
    out: list[str] = []
    i, n = 0, len(sql)
    quote: str | None = None  # the delimiter of the string literal we are in
    while i < n:
        if sql.startswith("{{", i):
            m = _EXPRESSION.match(sql, i)
            if m:
                if quote is not None:
                    expr, flt = m.group(2), _IN_STRING_FILTERS[quote]
                    out.append(f"{{{{{m.group(1)} ({expr}) | {flt} {m.group(3)}}}}}")
                else:
                    out.append(m.group(0))
                i = m.end()
                continue
        if sql.startswith(("{%", "{#"), i):
            end = sql.find(sql[i + 1] + "}", i + 2)
            if end != -1:
                out.append(sql[i:end + 2])
                i = end + 2
                continue
        c = sql[i]
        if quote is not None:
            if dialect == "spark" and c == "\\" and i + 1 < n:
                out.append(sql[i:i + 2])
                i += 2
                continue
            if c == quote:
                quote = None
            out.append(c)
            i += 1
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = end + 1 if end != -1 else -1
        elif c in ident_quotes:
            end = sql.find(c, i + 1)
        else:
            if c in string_quotes:
                quote = c
            out.append(c)
            i += 1
            continue
        # A comment or quoted identifier: copied as it is (quotes inside do not count).
        end = n if end == -1 else end + 1
        out.append(sql[i:end])
        i = end
    return "".join(out)


def _env(finalize: Any = None) -> jinja2.Environment:
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )


_TEXT_ENV = _env()


def has_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def template_variables(text: str) -> set[str]:
    """Top-level variable names a template uses (raises ``jinja2.TemplateSyntaxError``)."""
    return set(meta.find_undeclared_variables(_TEXT_ENV.parse(text)))


def render_text(text: str, variables: Mapping[str, Any]) -> str:
    """Render a path or other text template; values go in as plain text."""
    if not has_template(text):
        return text
    return _TEXT_ENV.from_string(text).render(**variables)


def render_sql(sql: str, variables: Mapping[str, Any], dialect: str = "duckdb") -> str:
    """Render a SQL template; every expression becomes a quoted literal, or escaped text
    when the SQL already puts it inside a string literal."""
    if not has_template(sql):
        return sql

    def finalize(v: Any) -> str:
        if isinstance(v, _InString):
            return _escape_in_string(v.value, v.quote, dialect)
        return sql_literal(v, dialect)

    env = _env(finalize=finalize)
    env.filters["_odibi_in_single_quotes"] = lambda v: _InString(v, "'")
    env.filters["_odibi_in_double_quotes"] = lambda v: _InString(v, '"')
    try:
        template = env.from_string(_mark_in_string(sql, dialect))
    except jinja2.TemplateSyntaxError:  # an expression our scan split wrongly: render it as written
        template = env.from_string(sql)
    return template.render(**variables)


def render_params(params: Any, variables: Mapping[str, Any]) -> Any:
    """Render every string inside ``params`` (nested dicts/lists) as text."""
    if isinstance(params, str):
        return render_text(params, variables)
    if isinstance(params, dict):
        return {k: render_params(v, variables) for k, v in params.items()}
    if isinstance(params, list):
        return [render_params(v, variables) for v in params]
    return params


def sample_variables(partitioned: bool = True) -> dict[str, Any]:
    """Stand-in values used to render templates at validation time."""

    class _AnyEnv(dict):
        def __getattr__(self, name: str) -> str:
            return "env_value"

        def __getitem__(self, name: str) -> str:
            return "env_value"

    values: dict[str, Any] = {"run_id": "validation-run", "pipeline": "pipeline", "env": _AnyEnv(),
                              "watermark_start": 0, "watermark_end": 1}
    if partitioned:
        values.update(
            partition_key="2024-01-01",
            partition_start="2024-01-01T00:00:00",
            partition_end="2024-01-02T00:00:00",
            partition_keys=["2024-01-01"],
        )
    return values
