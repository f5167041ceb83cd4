"""jinja2 templating of step values and params.

Strict: an unknown variable is an error. In SQL every ``{{ ... }}`` renders as a
quoted SQL literal (so a partition key or file name holding quotes or semicolons
cannot change the query); in paths it renders as plain text.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import jinja2
from jinja2 import meta

#: Variables a template may use. ``env`` is a namespace: ``{{ env.NAME }}``.
KNOWN_VARIABLES = frozenset(
    {"partition_key", "partition_start", "partition_end", "partition_keys", "run_id", "pipeline", "env"}
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
    if isinstance(value, dt.datetime | dt.date):
        value = value.isoformat()
    text = str(value).replace("'", "''")
    if dialect == "spark":
        # Spark SQL treats backslash as an escape inside string literals.
        text = text.replace("\\", "\\\\")
    return f"'{text}'"


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
    """Render a SQL template; every expression becomes a quoted literal."""
    if not has_template(sql):
        return sql
    env = _env(finalize=lambda v: sql_literal(v, dialect))
    return env.from_string(sql).render(**variables)


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

    values: dict[str, Any] = {"run_id": "validation-run", "pipeline": "pipeline", "env": _AnyEnv()}
    if partitioned:
        values.update(
            partition_key="2024-01-01",
            partition_start="2024-01-01T00:00:00",
            partition_end="2024-01-02T00:00:00",
            partition_keys=["2024-01-01"],
        )
    return values
