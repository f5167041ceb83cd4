"""SQL parsing with sqlglot: which tables a step's SQL reads."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

DIALECTS = {"pandas": "duckdb", "spark": "spark"}


def dialect_for(engine: str) -> str:
    return DIALECTS.get(engine, "duckdb")


def parse_sql(sql: str, dialect: str) -> list[exp.Expression]:
    """Parse ``sql`` (raises ``sqlglot.errors.ParseError``)."""
    statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    if not statements:
        raise sqlglot.errors.ParseError("empty SQL statement")
    return statements


def referenced_tables(statements: list[exp.Expression]) -> set[str]:
    """Names of the tables the statements read, excluding CTEs and table functions."""
    names: set[str] = set()
    for stmt in statements:
        ctes = {c.alias_or_name for c in stmt.find_all(exp.CTE)}
        for table in stmt.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # read_parquet(...) and other table functions
            name = table.name
            qualified = ".".join(p.name for p in table.parts)
            if qualified in ctes or name in ctes and not table.db:
                continue
            names.add(qualified)
    return names
