"""Column-level lineage of SQL steps, traced by ``sqlglot.lineage`` (as dagster-dbt does).

The SQL of a step names its inputs by their logical names (the keys of the step's
``inputs``). Given the columns of each input, the query is parsed and qualified once
(stars expanded, every column bound to its table); ``sqlglot.lineage`` then walks each
output column of the outermost query through CTEs, derived tables, set operations and
scalar subqueries down to the input columns it is computed from. The result is Dagster's
``TableColumnLineage``.

Only the expression of an output column counts as its dependency (``SUM(amount) AS
total`` depends on ``amount``); columns that merely filter or join (WHERE, ON) do not,
which is what Dagster's column lineage view and dagster-dbt show too.

:func:`sql_lineage` is the one analysis: per output column, its expression as written and the
input columns behind it. Materialization metadata (``dagster/column_lineage``, through
:func:`table_column_lineage`) and the tracker record (through :func:`lineage_record`, which
the story and ``odibi-dagster lineage`` read) are both made from its result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import sqlglot
from sqlglot import exp
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope
from sqlglot.schema import MappingSchema

__all__ = [
    "OutputColumn",
    "lineage_record",
    "sql_column_lineage",
    "sql_lineage",
    "sql_output_columns",
    "table_column_lineage",
]

log = logging.getLogger(__name__)

_Dep = tuple[str, str]  # (table as written in the schema, column)


def _parse(sql: str, dialect: str) -> exp.Expr:
    statements = [s for s in sqlglot.parse(sql, dialect=dialect) if s is not None]
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, found {len(statements)}")
    return statements[0]


def _written_projections(tree: exp.Expr, dialect: str) -> Iterable[tuple[str, str]]:
    """(output name, expression as written) of the outermost select's projections; stars left out."""
    query = tree
    while isinstance(query, exp.SetOperation):
        query = query.left
    if isinstance(query, exp.Query):
        for projection in query.selects:
            name = projection.alias_or_name
            if name and name != "*" and not isinstance(projection.unalias(), exp.Star):
                yield name, projection.unalias().sql(dialect=dialect)


class _NameMap:
    """Maps the optimizer's normalised (lower-cased) identifiers back to the user's spelling."""

    def __init__(self, tree: exp.Expr, input_columns: Mapping[str, Iterable[str]], dialect: str) -> None:
        self.tables = {t.lower(): t for t in input_columns}
        self.columns = {t.lower(): {c.lower(): c for c in cols} for t, cols in input_columns.items()}
        all_input = {c.lower(): c for cols in input_columns.values() for c in cols}
        projections = list(_written_projections(tree, dialect))
        written = {n.lower(): n for n, _ in projections}
        self.outputs = {**all_input, **written}
        # Output columns not written in the outermost select come from a star.
        self.expressions = {n.lower(): text for n, text in projections}

    def expression(self, name: str) -> str:
        """The output's expression as written, ``*`` for a column a star expanded."""
        return self.expressions.get(name.lower(), "*")

    def output(self, name: str) -> str:
        return self.outputs.get(name.lower(), name)

    def table(self, name: str) -> str | None:
        return self.tables.get(name.lower())

    def column(self, table: str, name: str) -> str | None:
        """The input column as spelled in ``input_columns``, ``None`` if the input has no such column."""
        return self.columns.get(table.lower(), {}).get(name.lower())


class _Query:
    """A step's SQL parsed and qualified once; every output column's lineage reuses the tree."""

    def __init__(self, sql: str, input_columns: Mapping[str, Iterable[str]], dialect: str) -> None:
        input_columns = {table: list(columns) for table, columns in input_columns.items()}
        tree = _parse(sql, dialect)
        self.dialect = dialect
        self.names = _NameMap(tree, input_columns, dialect)
        # One schema object for qualify and lineage (each would otherwise build its own).
        self.schema = MappingSchema(
            {table: dict.fromkeys(columns, "UNKNOWN") for table, columns in input_columns.items()}, dialect=dialect
        )
        self.qualified = qualify(
            tree,  # parsed here, so qualify may rewrite it in place
            dialect=dialect,
            schema=self.schema,
            validate_qualify_columns=False,
            identify=False,
            quote_identifiers=False,
        )
        root = build_scope(self.qualified)
        if root is None:
            raise ValueError("not a query")
        self.root: Scope = root

    def output_names(self) -> list[str]:
        """Output columns in the user's spelling (stars expanded)."""
        return [self.names.output(s.alias_or_name) for s in self.root.expression.selects]

    def column_deps(self) -> dict[str, set[_Dep]]:
        """Per output column (the optimizer's name), the (table, column) pairs it is computed from."""
        # The scope is the qualified tree's: lineage() neither parses nor qualifies again. Its
        # nodes' trimmed SELECT texts (trim_selects) are for drawing graphs: not needed here.
        nodes = lineage(
            None, self.qualified, self.schema, dialect=self.dialect, scope=self.root, copy=False, trim_selects=False
        )
        columns: dict[str, str] = {}  # leaf name -> column: many leaves share a name
        return {name: set(_table_columns(node, columns)) for name, node in nodes.items() if name != "*"}


def _table_columns(root: Node, columns: dict[str, str]) -> Iterator[_Dep]:
    """The table columns at the ends of a lineage tree: leaves whose source is a table.

    ``columns`` memoises the column named by a leaf name (parsing it is most of the walk's cost).
    """
    stack: list[tuple[Node, Node | None]] = [(root, None)]
    seen: set[int] = set()
    while stack:
        node, parent = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        table = node.expression
        if isinstance(table, exp.Table) and isinstance(table.this, exp.Identifier):
            # Leaves are named "<table>.<column>"; a star the optimizer could not expand (an
            # input without known columns) passes the column its parent asks for through by name.
            named = parent.name if node.name.endswith("*") and parent is not None else node.name
            if named not in columns:
                columns[named] = exp.to_column(named).name
            yield _table_label(table), columns[named]
        stack.extend((child, node) for child in node.downstream)


def _table_label(table: exp.Table) -> str:
    return ".".join(part.name for part in table.parts)


def sql_output_columns(
    sql: str, input_columns: Mapping[str, Iterable[str]], dialect: str = "duckdb"
) -> list[str] | None:
    """The output column names of ``sql`` (stars expanded), or ``None`` if it cannot be analysed."""
    try:
        return _Query(sql, input_columns, dialect).output_names()
    except Exception:
        return None


@dataclass(frozen=True)
class OutputColumn:
    """One output column of a SQL step and the input columns its value is computed from."""

    name: str
    #: The column's expression in the outermost SELECT as written (``SUM(amount)``), ``*`` for a
    #: column a star expanded.
    expression: str
    #: (input's logical name, column as the input spells it); empty for literals and ``COUNT(*)``.
    sources: tuple[tuple[str, str], ...]


def sql_lineage(
    sql: str, input_columns: Mapping[str, Iterable[str]], dialect: str = "duckdb"
) -> list[OutputColumn] | None:
    """Every output column of ``sql`` (in order, stars expanded) with its expression and sources.

    ``input_columns`` maps each input's logical name (the table name used in the SQL) to its
    columns. Dependencies on tables that are not inputs, or on columns an input does not have,
    are left out (the SQL would fail anyway). Returns ``None`` instead of raising when the SQL
    cannot be analysed.
    """
    try:
        query = _Query(sql, input_columns, dialect)
        deps = query.column_deps()
        out: list[OutputColumn] = []
        for projection in query.root.expression.selects:
            optimizer_name = projection.alias_or_name
            sources: list[tuple[str, str]] = []
            for table, column in sorted(deps.get(optimizer_name, ())):
                logical = query.names.table(table)
                source_column = query.names.column(logical, column) if logical else None
                if logical is not None and source_column is not None:
                    sources.append((logical, source_column))
            name = query.names.output(optimizer_name)
            out.append(OutputColumn(name, query.names.expression(name), tuple(sources)))
        return out
    except Exception as err:  # lineage is best effort: never break a materialization over it
        log.debug("column lineage unavailable: %s", err)
        return None


def table_column_lineage(
    columns: Sequence[OutputColumn], input_asset_keys: Mapping[str, dg.AssetKey]
) -> dg.TableColumnLineage:
    """:func:`sql_lineage`'s result as Dagster's ``TableColumnLineage``.

    ``input_asset_keys`` maps the inputs' logical names to the upstream asset keys. Output
    columns with no input column behind them (literals, ``COUNT(*)``) are left out.
    """
    keys = {name.lower(): dg.AssetKey.from_coercible(key) for name, key in input_asset_keys.items()}
    deps_by_column: dict[str, list[dg.TableColumnDep]] = {}
    for column in columns:
        column_deps = [
            dg.TableColumnDep(asset_key=keys[logical.lower()], column_name=source)
            for logical, source in column.sources
            if logical.lower() in keys
        ]
        if column_deps:
            deps_by_column.setdefault(column.name, column_deps)
    return dg.TableColumnLineage(deps_by_column=deps_by_column)


def lineage_record(columns: Sequence[OutputColumn], inputs: Mapping[str, str]) -> list[dict[str, Any]]:
    """:func:`sql_lineage`'s result as JSON for a tracker record, sources named by dataset.

    ``inputs`` is the step's ``inputs`` (logical name -> dataset). Shape:
    ``[{"column": "total", "expression": "SUM(amount)", "sources": [["silver_sales", "amount"]]}]``.
    """
    datasets = {logical.lower(): dataset for logical, dataset in inputs.items()}
    return [
        {
            "column": column.name,
            "expression": column.expression,
            "sources": [[datasets.get(logical.lower(), logical), source] for logical, source in column.sources],
        }
        for column in columns
    ]


def sql_column_lineage(
    sql: str,
    input_columns: Mapping[str, Iterable[str]],
    input_asset_keys: Mapping[str, dg.AssetKey],
    dialect: str = "duckdb",
) -> dg.TableColumnLineage | None:
    """Column lineage of a SQL step as Dagster's ``TableColumnLineage`` (:func:`sql_lineage`
    then :func:`table_column_lineage`).

    ``input_columns`` maps each input's logical name (the table name used in the SQL)
    to its columns; ``input_asset_keys`` maps the same names to the upstream asset keys.
    Output columns with no input column behind them (literals, ``COUNT(*)``) are left
    out. Returns ``None`` instead of raising when the SQL cannot be analysed.
    """
    columns = sql_lineage(sql, input_columns, dialect)
    return None if columns is None else table_column_lineage(columns, input_asset_keys)
