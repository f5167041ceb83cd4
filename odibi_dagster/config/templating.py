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
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # imported at first render: most steps have no template, and a load then needs no jinja2
    import jinja2

#: Variables a template may use. ``env`` is a namespace: ``{{ env.NAME }}``.
KNOWN_VARIABLES = frozenset(
    {
        "partition_key",
        "partition_start",
        "partition_end",
        "partition_keys",
        "run_id",
        "pipeline",
        "env",
        # The range a polling sensor's run reads: (watermark_start, watermark_end]; None outside such runs.
        "watermark_start",
        "watermark_end",
    }
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


def sql_literal(value: Any, dialect: str = "duckdb", *, lists: Literal["tuple", "array"] = "tuple") -> str:
    """``value`` as a SQL literal that cannot break out of its quotes.

    Sequences render as ``('a', 'b')`` for ``IN`` (templates: ``IN {{ partition_keys }}``),
    or with ``lists="array"`` as DuckDB list literals ``['a', 'b']`` (reader options);
    mappings as DuckDB struct literals; dates and datetimes as ISO strings.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return repr(value) if not isinstance(value, Decimal) else str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = ", ".join(sql_literal(v, dialect, lists=lists) for v in value)
        return f"[{items}]" if lists == "array" else f"({items})"
    if isinstance(value, Mapping):
        return (
            "{"
            + ", ".join(
                f"{sql_literal(str(k), dialect)}: {sql_literal(v, dialect, lists=lists)}" for k, v in value.items()
            )
            + "}"
        )
    return "'" + _escape_in_string(value, "'", dialect) + "'"


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (double quotes, embedded quotes doubled)."""
    return '"' + str(name).replace('"', '""') + '"'


def _as_text(value: Any) -> str:
    """A value as template text: None empty, dates and datetimes ISO."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _escape_in_string(value: Any, quote: str, dialect: str) -> str:
    """``value`` as the text inside a ``quote``-delimited SQL string literal."""
    text = _as_text(value)
    if dialect == "spark":
        # Spark SQL escapes with backslashes; a doubled quote would be two adjacent literals
        # ('it''s' is "its" in Spark), so escape the quote too.
        return text.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return text.replace(quote, quote + quote)


class _Positioned:
    """A value rendered in a position of the SQL other than a bare expression (see
    :func:`_mark_positions`): inside a string literal, a quoted identifier or a comment."""

    def __init__(self, value: Any, position: str):
        self.value = value
        self.position = position


_EXPRESSION = re.compile(r"\{\{([-+]?)(.*?)([-+]?)\}\}", re.DOTALL)


class UnsafeTemplate(ValueError):
    """A template expression in a position of the SQL where no value can be rendered safely."""


# The rendering of a value in each position of the SQL an expression can stand in (the filter
# _mark_positions puts on it); the bare position renders as a literal (see render_sql).
_POSITION_FILTERS = {
    "'": "_odibi_in_single_quotes",
    '"': "_odibi_in_double_quotes",
    "E'": "_odibi_in_escape_string",
    'ident"': "_odibi_in_double_quoted_identifier",
    "ident`": "_odibi_in_backquoted_identifier",
    "--": "_odibi_in_line_comment",
    "/*": "_odibi_in_block_comment",
}
_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$]")


def _mark_positions(sql: str, dialect: str) -> str:
    """Give every ``{{ x }}`` the filter of its position: ``{{ (x) | _odibi_in_... }}``.

    Scans the template text for string literals ('...'; "..." in Spark SQL; E'...' with
    backslash escapes in DuckDB), quoted identifiers ("..." in DuckDB, `...`), comments and
    other jinja tags. Raises :class:`UnsafeTemplate` for an expression inside a
    dollar-quoted string ($$...$$) or a Spark raw string (r'...'): nothing can be escaped there.
    """
    return _PositionScanner(sql, dialect == "spark").run()


class _PositionScanner:
    """One pass over a SQL template, copying it to ``out`` with each expression marked."""

    def __init__(self, sql: str, spark: bool):
        self.sql, self.spark = sql, spark
        self.out: list[str] = []
        self.i = 0
        self.context: str | None = None  # a key of _POSITION_FILTERS while inside that construct
        self.closer = ""

    def run(self) -> str:
        while self.i < len(self.sql):
            if self._jinja_tag():
                continue
            if self.context is not None:
                self._inside()
            else:
                self._outside()
        return "".join(self.out)

    def _copy(self, end: int) -> None:
        self.out.append(self.sql[self.i : end])
        self.i = end

    def _enter(self, context: str, closer: str, end: int) -> None:
        self.context, self.closer = context, closer
        self._copy(end)

    def _jinja_tag(self) -> bool:
        """Copy a ``{{ ... }}`` (marked with its position's filter) or another jinja tag."""
        sql, i = self.sql, self.i
        if sql.startswith("{{", i) and (m := _EXPRESSION.match(sql, i)):
            if self.context is not None:
                self.out.append(f"{{{{{m.group(1)} ({m.group(2)}) | {_POSITION_FILTERS[self.context]} {m.group(3)}}}}}")
            else:
                self.out.append(m.group(0))
            self.i = m.end()
            return True
        if sql.startswith(("{%", "{#"), i):
            end = sql.find(sql[i + 1] + "}", i + 2)
            if end != -1:
                self._copy(end + 2)
                return True
        return False

    def _inside(self) -> None:
        """One character (or escape, or doubled quote) inside a string, identifier or comment."""
        sql, i, context, closer = self.sql, self.i, self.context, self.closer
        spark_quote = self.spark and context in ("'", '"')
        if (context == "E'" or spark_quote) and sql[i] == "\\" and i + 1 < len(sql):
            self._copy(i + 2)
        elif not sql.startswith(closer, i):
            self._copy(i + 1)
        elif context in ("'", "E'", 'ident"', "ident`") and sql.startswith(closer * 2, i) and not spark_quote:
            self._copy(i + 2)  # a doubled quote stays inside
        else:
            self.context = None
            self._copy(i + len(closer))

    def _outside(self) -> None:
        """One character of bare SQL, or the start of a quoted or commented construct."""
        sql, i, spark = self.sql, self.i, self.spark
        c, n = sql[i], len(sql)
        prev_ident = i > 0 and _IDENT_CHAR.match(sql[i - 1]) is not None
        if c == "$" and not spark and not prev_ident and (m := _DOLLAR_QUOTE.match(sql, i)):
            end = sql.find(m.group(0), m.end())
            end = n if end == -1 else end + len(m.group(0))
            if "{{" in sql[m.end() : end] or "{%" in sql[m.end() : end]:
                raise UnsafeTemplate(
                    f"a template inside the dollar-quoted string {m.group(0)}...{m.group(0)} "
                    "cannot be escaped; put it in '...' instead"
                )
            self._copy(end)
        elif spark and c in "rR" and not prev_ident and i + 1 < n and sql[i + 1] in "'\"":
            end = sql.find(sql[i + 1], i + 2)
            end = n if end == -1 else end + 1
            if "{{" in sql[i:end] or "{%" in sql[i:end]:
                raise UnsafeTemplate(
                    "a template inside a raw string (r'...') cannot be escaped; put it in '...' instead"
                )
            self._copy(end)
        elif not spark and c in "eE" and not prev_ident and i + 1 < n and sql[i + 1] == "'":
            self._enter("E'", "'", i + 2)
        elif sql.startswith("--", i):
            self._enter("--", "\n", i + 2)
        elif sql.startswith("/*", i):
            self._enter("/*", "*/", i + 2)
        elif c == "'" or (spark and c == '"'):
            self._enter(c, c, i + 1)
        elif c == "`" or (not spark and c == '"'):
            self._enter(f"ident{c}", c, i + 1)
        else:
            self._copy(i + 1)


def _render_positioned(v: _Positioned, dialect: str) -> str:
    """The text of a value in its position: escaped so it can never end the construct it is in."""
    pos = v.position
    if pos in ("'", '"'):
        return _escape_in_string(v.value, pos, dialect)
    text = _as_text(v.value)
    if pos == "E'":  # backslash escapes are on: double them, and the quote
        return text.replace("\\", "\\\\").replace("'", "''")
    if pos.startswith("ident"):
        quote = pos[-1]
        return text.replace(quote, quote + quote)
    if pos == "--":  # a line break would end the comment
        return re.sub(r"[\r\n\v\f\x85\u2028\u2029]", " ", text)
    return text.replace("*/", "* /").replace("/*", "/ *")  # block comment


def _env(finalize: Any = None) -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )


@cache
def _text_env() -> jinja2.Environment:
    return _env()


def has_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def template_variables(text: str) -> set[str]:
    """Top-level variable names a template uses (raises ``jinja2.TemplateSyntaxError``)."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(_text_env().parse(text)))


def render_text(text: str, variables: Mapping[str, Any]) -> str:
    """Render a path or other text template; values go in as plain text."""
    if not has_template(text):
        return text
    return _text_env().from_string(text).render(**variables)


def render_sql(sql: str, variables: Mapping[str, Any], dialect: str = "duckdb") -> str:
    """Render a SQL template so no value can change the statement's structure.

    A bare ``{{ x }}`` becomes a quoted literal; inside a string literal, a quoted identifier
    or a comment it becomes text escaped for that position. Raises :class:`UnsafeTemplate`
    for positions where nothing can be escaped (dollar-quoted and Spark raw strings).
    """
    if not has_template(sql):
        return sql

    def finalize(v: Any) -> str:
        if isinstance(v, _Positioned):
            return _render_positioned(v, dialect)
        return sql_literal(v, dialect)

    env = _env(finalize=finalize)
    for position, name in _POSITION_FILTERS.items():
        env.filters[name] = lambda v, position=position: _Positioned(v, position)
    marked = _mark_positions(sql, dialect)
    from jinja2 import TemplateSyntaxError

    try:
        template = env.from_string(marked)
    except TemplateSyntaxError:
        if marked == sql:
            raise
        # The scan split an expression wrongly (a '}}' inside it, say). Rendering the original
        # would put bare literals inside strings, so refuse instead.
        raise UnsafeTemplate(
            "a template expression could not be placed in the SQL (does it contain '}}' "
            "or a quote?); simplify the expression"
        ) from None
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

    values: dict[str, Any] = {
        "run_id": "validation-run",
        "pipeline": "pipeline",
        "env": _AnyEnv(),
        "watermark_start": 0,
        "watermark_end": 1,
    }
    if partitioned:
        values.update(
            partition_key="2024-01-01",
            partition_start="2024-01-01T00:00:00",
            partition_end="2024-01-02T00:00:00",
            partition_keys=["2024-01-01"],
        )
    return values
