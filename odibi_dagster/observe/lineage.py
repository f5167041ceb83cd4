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
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

import dagster as dg
import sqlglot
from sqlglot import exp
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope
from sqlglot.schema import MappingSchema

__all__ = ["sql_column_lineage", "sql_output_columns"]

log = logging.getLogger(__name__)

_Dep = tuple[str, str]  # (table as written in the schema, column)


def _parse(sql: str, dialect: str) -> exp.Expr:
    statements = [s for s in sqlglot.parse(sql, dialect=dialect) if s is not None]
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, found {len(statements)}")
    return statements[0]


def _written_names(tree: exp.Expr) -> Iterable[str]:
    """Output names as the user wrote them in the outermost select (aliases, bare columns)."""
    query = tree
    while isinstance(query, exp.SetOperation):
        query = query.left
    if isinstance(query, exp.Query):
        for projection in query.selects:
            name = projection.alias_or_name
            if name and name != "*":
                yield name


class _NameMap:
    """Maps the optimizer's normalised (lower-cased) identifiers back to the user's spelling."""

    def __init__(self, tree: exp.Expr, input_columns: Mapping[str, Iterable[str]]) -> None:
        self.tables = {t.lower(): t for t in input_columns}
        self.columns = {t.lower(): {c.lower(): c for c in cols} for t, cols in input_columns.items()}
        all_input = {c.lower(): c for cols in input_columns.values() for c in cols}
        written = {n.lower(): n for n in _written_names(tree)}
        self.outputs = {**all_input, **written}

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
        self.names = _NameMap(tree, input_columns)
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


def sql_column_lineage(
    sql: str,
    input_columns: Mapping[str, Iterable[str]],
    input_asset_keys: Mapping[str, dg.AssetKey],
    dialect: str = "duckdb",
) -> dg.TableColumnLineage | None:
    """Column lineage of a SQL step as Dagster's ``TableColumnLineage``.

    ``input_columns`` maps each input's logical name (the table name used in the SQL)
    to its columns; ``input_asset_keys`` maps the same names to the upstream asset keys.
    Output columns with no input column behind them (literals, ``COUNT(*)``) are left
    out. Returns ``None`` instead of raising when the SQL cannot be analysed.
    """
    try:
        query = _Query(sql, input_columns, dialect)
        keys = {name.lower(): dg.AssetKey.from_coercible(key) for name, key in input_asset_keys.items()}
        deps_by_column: dict[str, list[dg.TableColumnDep]] = {}
        for out_name, deps in query.column_deps().items():
            column_deps: list[dg.TableColumnDep] = []
            for table, column in sorted(deps):
                logical = query.names.table(table)
                source_column = query.names.column(logical, column) if logical else None
                if logical is None or source_column is None or logical.lower() not in keys:
                    # Not a step input, or a column the input does not have: the SQL would fail
                    # anyway, and Dagster should not show lineage to columns that do not exist.
                    continue
                column_deps.append(dg.TableColumnDep(asset_key=keys[logical.lower()], column_name=source_column))
            if column_deps:
                deps_by_column[query.names.output(out_name)] = column_deps
        return dg.TableColumnLineage(deps_by_column=deps_by_column)
    except Exception as err:  # lineage is best effort: never break a materialization over it
        log.debug("column lineage unavailable: %s", err)
        return None
