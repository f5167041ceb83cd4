"""SQL parsing with sqlglot: which tables a step's SQL reads."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: a load whose SQL checks are cached never needs sqlglot
    from sqlglot import exp

DIALECTS = {"pandas": "duckdb", "spark": "spark"}

# Spark reads files directly with ``format.`path```: not tables.
SPARK_FILE_SOURCES = {"parquet", "csv", "json", "orc", "avro", "text", "delta", "binaryfile"}
# DuckDB reads a quoted file name as a table (``FROM 'data/*.parquet'``): a replacement scan.
_FILE_LIKE = re.compile(
    r"(^[a-z][a-z0-9+.-]*://)|[/\\*?]|\.(csv|tsv|txt|parquet|pq|json|jsonl|ndjson|xlsx|arrow|avro|db|sqlite)"
    r"(\.gz|\.zst)?$",
    re.IGNORECASE,
)


def dialect_for(engine: str) -> str:
    return DIALECTS.get(engine, "duckdb")


def parse_sql(sql: str, dialect: str) -> list[exp.Expression]:
    """Parse ``sql`` (raises ``sqlglot.errors.ParseError``)."""
    import sqlglot

    statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    if not statements:
        raise sqlglot.errors.ParseError("empty SQL statement")
    return statements


def _is_file_reference(table: exp.Table, dialect: str | None) -> bool:
    from sqlglot import exp

    ident = table.this
    if not isinstance(ident, exp.Identifier) or not ident.quoted:
        return False
    if dialect == "spark":
        return table.db.lower() in SPARK_FILE_SOURCES and not table.catalog
    return not table.db and bool(_FILE_LIKE.search(table.name))


def referenced_tables(statements: list[exp.Expression], dialect: str | None = None) -> set[str]:
    """Names of the tables the statements read, excluding CTEs, table functions and file reads.

    CTE names match case-insensitively, as DuckDB and Spark resolve them.
    """
    from sqlglot import exp

    names: set[str] = set()
    for stmt in statements:
        ctes = {c.alias_or_name.lower() for c in stmt.find_all(exp.CTE)}
        for table in stmt.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # read_parquet(...) and other table functions
            if _is_file_reference(table, dialect):
                continue
            if table.find_ancestor(exp.Hint) is not None:
                continue  # /*+ BROADCAST(c) */ names an alias or a table read elsewhere
            name = table.name
            qualified = ".".join(p.name for p in table.parts)
            if qualified.lower() in ctes or (name.lower() in ctes and not table.db):
                continue
            names.add(qualified)
    return names
