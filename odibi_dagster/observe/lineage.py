"""Column-level lineage of SQL steps, parsed with sqlglot.

The SQL of a step names its inputs by their logical names (the keys of the step's
``inputs``). Given the columns of each input, the query is qualified (stars expanded,
every column bound to its table) and each output column of the outermost query is
traced through CTEs, derived tables, set operations and scalar subqueries down to the
input columns it is computed from. The result is Dagster's ``TableColumnLineage``.

Only the expression of an output column counts as its dependency (``SUM(amount) AS
total`` depends on ``amount``); columns that merely filter or join (WHERE, ON) do not,
which is what Dagster's column lineage view and dagster-dbt show too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import dagster as dg
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, find_all_in_scope

__all__ = ["sql_column_lineage", "sql_output_columns"]

log = logging.getLogger(__name__)

_Dep = tuple[str, str]  # (table as written in the schema, column)


def _parse(sql: str, dialect: str) -> exp.Expr:
    statements = [s for s in sqlglot.parse(sql, dialect=dialect) if s is not None]
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, found {len(statements)}")
    return statements[0]


def _table_label(table: exp.Table) -> str:
    return ".".join(part.name for part in table.parts)


class _Tracer:
    """Walks the qualified query's scopes from an output column down to table columns."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str | int], frozenset[_Dep]] = {}

    def column_deps(self, scope: Scope, column: str | int) -> frozenset[_Dep]:
        key = (id(scope), column)
        if key in self._cache:
            return self._cache[key]
        self._cache[key] = frozenset()  # guards recursive CTEs against infinite loops
        deps = frozenset(self._trace(scope, column))
        self._cache[key] = deps
        return deps

    def _trace(self, scope: Scope, column: str | int) -> set[_Dep]:
        expression = scope.expression
        if isinstance(expression, exp.SetOperation):
            # A UNION's output column i comes from column i of each branch.
            index = column if isinstance(column, int) else _select_index(expression, column)
            deps: set[_Dep] = set()
            if index is None:
                return deps
            for branch in scope.set_operation_scopes:
                deps |= self.column_deps(branch, index)
            return deps
        if not isinstance(expression, exp.Select):
            # A parenthesised query: the inner scope holds the real select.
            deps = set()
            for inner in scope.subquery_scopes:
                deps |= self.column_deps(inner, column)
            return deps

        select = _find_select(expression, column)
        if select is None:
            return set()
        deps = set()
        if isinstance(select, exp.Star) or (isinstance(select, exp.Column) and select.is_star):
            # An unexpanded star (unknown input schema): the column passes through by name.
            if isinstance(column, str):
                for source in scope.sources.values():
                    deps |= self._from_source(source, column)
            return deps
        for col in find_all_in_scope(select, exp.Column):
            source = scope.sources.get(col.table)
            if source is None and not col.table and len(scope.sources) == 1:
                source = next(iter(scope.sources.values()))
            if source is not None:
                deps |= self._from_source(source, col.name)
        # Scalar subqueries inside the expression: everything they select feeds the column.
        inner_scopes = {id(s.expression): s for s in scope.subquery_scopes}
        for subquery in find_all_in_scope(select, *exp.UNWRAPPED_QUERIES):
            inner = inner_scopes.get(id(subquery))
            if inner is not None:
                for i, _ in enumerate(inner.expression.selects):
                    deps |= self.column_deps(inner, i)
        return deps

    def _from_source(self, source: exp.Table | Scope, column: str) -> set[_Dep]:
        if isinstance(source, Scope):
            return set(self.column_deps(source, column))
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            return {(_table_label(source), column)}
        return set()


def _select_index(expression: exp.Query, column: str) -> int | None:
    for i, select in enumerate(expression.selects):
        if select.alias_or_name == column:
            return i
    return None


def _find_select(select: exp.Select, column: str | int) -> exp.Expr | None:
    selects = select.selects
    if isinstance(column, int):
        return selects[column] if column < len(selects) else None
    for projection in selects:
        if projection.alias_or_name == column:
            return projection
    for projection in selects:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and projection.is_star):
            return projection
    return None


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


def _qualified(sql: str, input_columns: Mapping[str, Iterable[str]], dialect: str) -> tuple[exp.Expr, Scope]:
    tree = _parse(sql, dialect)
    schema = {table: {column: "UNKNOWN" for column in columns} for table, columns in input_columns.items()}
    qualified = qualify(
        tree.copy(),
        dialect=dialect,
        schema=schema,
        validate_qualify_columns=False,
        identify=False,
        quote_identifiers=False,
    )
    root = build_scope(qualified)
    if root is None:
        raise ValueError("not a query")
    return tree, root


def sql_output_columns(
    sql: str, input_columns: Mapping[str, Iterable[str]], dialect: str = "duckdb"
) -> list[str] | None:
    """The output column names of ``sql`` (stars expanded), or ``None`` if it cannot be analysed."""
    try:
        tree, root = _qualified(sql, input_columns, dialect)
        names = _NameMap(tree, input_columns)
        return [names.output(s.alias_or_name) for s in root.expression.selects]
    except Exception:
        return None


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
        input_columns = {k: list(v) for k, v in input_columns.items()}
        tree, root = _qualified(sql, input_columns, dialect)
        names = _NameMap(tree, input_columns)
        keys = {name.lower(): dg.AssetKey.from_coercible(key) for name, key in input_asset_keys.items()}
        tracer = _Tracer()
        deps_by_column: dict[str, list[dg.TableColumnDep]] = {}
        for index, projection in enumerate(root.expression.selects):
            out_name = projection.alias_or_name
            if not out_name or out_name == "*":
                continue
            deps = tracer.column_deps(root, index)
            column_deps: list[dg.TableColumnDep] = []
            for table, column in sorted(deps):
                logical = names.table(table)
                source_column = names.column(logical, column) if logical else None
                if logical is None or source_column is None or logical.lower() not in keys:
                    # Not a step input, or a column the input does not have: the SQL would fail
                    # anyway, and Dagster should not show lineage to columns that do not exist.
                    continue
                column_deps.append(dg.TableColumnDep(asset_key=keys[logical.lower()], column_name=source_column))
            if column_deps:
                deps_by_column[names.output(out_name)] = column_deps
        return dg.TableColumnLineage(deps_by_column=deps_by_column)
    except Exception as err:  # lineage is best effort: never break a materialization over it
        log.debug("column lineage unavailable: %s", err)
        return None
