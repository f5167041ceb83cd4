"""SQL column lineage with sqlglot -> Dagster TableColumnLineage."""

from __future__ import annotations

import dagster as dg
import pytest

from odibi_dagster.observe.lineage import (
    lineage_record,
    sql_column_lineage,
    sql_lineage,
    sql_output_columns,
    table_column_lineage,
)

COLUMNS = {
    "orders": ["order_id", "cust_id", "amount", "status"],
    "customers": ["cust_id", "name", "Region"],
}
KEYS = {"orders": dg.AssetKey(["sales", "bronze_orders"]), "customers": dg.AssetKey(["sales", "customers"])}


def deps(sql: str, dialect: str = "duckdb") -> dict[str, set[tuple[str, str]]]:
    lineage = sql_column_lineage(sql, COLUMNS, KEYS, dialect=dialect)
    assert lineage is not None, sql
    return {
        column: {(dep.asset_key.path[-1], dep.column_name) for dep in column_deps}
        for column, column_deps in lineage.deps_by_column.items()
    }


def test_select_star_expands_from_input_columns():
    assert deps("SELECT * FROM orders WHERE amount > 0") == {
        "order_id": {("bronze_orders", "order_id")},
        "cust_id": {("bronze_orders", "cust_id")},
        "amount": {("bronze_orders", "amount")},
        "status": {("bronze_orders", "status")},
    }


def test_aliases_and_join_with_table_aliases():
    result = deps(
        "SELECT o.order_id AS id, c.name AS customer, o.amount "
        "FROM orders o JOIN customers AS c ON o.cust_id = c.cust_id"
    )
    assert result == {
        "id": {("bronze_orders", "order_id")},
        "customer": {("customers", "name")},
        "amount": {("bronze_orders", "amount")},
    }


def test_aggregates_group_by_and_case():
    result = deps(
        """
        SELECT c.Region, SUM(o.amount) AS total, COUNT(*) AS n,
               CASE WHEN o.status = 'x' THEN o.amount ELSE c.cust_id END AS mixed
        FROM orders o JOIN customers c USING (cust_id)
        GROUP BY c.Region, mixed
        """
    )
    assert result["Region"] == {("customers", "Region")}
    assert result["total"] == {("bronze_orders", "amount")}
    assert result["mixed"] == {
        ("bronze_orders", "status"),
        ("bronze_orders", "amount"),
        ("customers", "cust_id"),
    }
    assert "n" not in result  # COUNT(*) reads no column


def test_ctes_subqueries_and_star_over_cte():
    result = deps(
        """
        WITH big AS (SELECT order_id, amount * 2 AS doubled, cust_id FROM orders WHERE amount > 10),
             named AS (SELECT b.*, c.name FROM big b LEFT JOIN customers c ON b.cust_id = c.cust_id)
        SELECT n.*, (SELECT MAX(amount) FROM orders) AS max_amount
        FROM (SELECT * FROM named) AS n
        """
    )
    assert result["doubled"] == {("bronze_orders", "amount")}
    assert result["name"] == {("customers", "name")}
    assert result["order_id"] == {("bronze_orders", "order_id")}
    assert result["max_amount"] == {("bronze_orders", "amount")}


def test_union_depends_on_every_branch():
    result = deps("SELECT cust_id AS id FROM orders UNION ALL SELECT cust_id FROM customers")
    assert result == {"id": {("bronze_orders", "cust_id"), ("customers", "cust_id")}}


def test_case_insensitive_names_keep_user_spelling():
    result = deps("SELECT REGION, Name AS CustomerName FROM Customers")
    assert result == {"REGION": {("customers", "Region")}, "CustomerName": {("customers", "name")}}


def test_spark_dialect():
    result = deps("SELECT `o`.`amount` AS amt FROM orders `o`", dialect="spark")
    assert result == {"amt": {("bronze_orders", "amount")}}


def test_lineage_value_is_dagster_type():
    lineage = sql_column_lineage("SELECT amount FROM orders", COLUMNS, KEYS)
    assert isinstance(lineage, dg.TableColumnLineage)
    [dep] = lineage.deps_by_column["amount"]
    assert isinstance(dep, dg.TableColumnDep) and dep.asset_key == KEYS["orders"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC nonsense FROM",
        "",
        "SELECT 1; SELECT 2",
        "CREATE TABLE x (a INT)",
        "SELECT nope FROM orders",  # unknown column: no lineage to invent
    ],
)
def test_unanalysable_sql_returns_none_or_empty(sql):
    lineage = sql_column_lineage(sql, COLUMNS, KEYS)
    assert lineage is None or lineage.deps_by_column == {}


def test_output_columns():
    assert sql_output_columns("SELECT *, amount + 1 AS next FROM orders", COLUMNS) == [
        "order_id",
        "cust_id",
        "amount",
        "status",
        "next",
    ]
    assert sql_output_columns("not sql at all (", COLUMNS) is None


def test_sql_lineage_lists_every_output_column_with_its_expression():
    columns = sql_lineage(
        "SELECT o.*, c.name AS customer, amount * 2 AS doubled, 'x' AS tag, COUNT(*) OVER () AS n "
        "FROM orders o JOIN customers c USING (cust_id)",
        COLUMNS,
    )
    assert columns is not None
    assert [(c.name, c.expression, c.sources) for c in columns] == [
        ("order_id", "*", (("orders", "order_id"),)),
        ("cust_id", "*", (("orders", "cust_id"),)),
        ("amount", "*", (("orders", "amount"),)),
        ("status", "*", (("orders", "status"),)),
        ("customer", "c.name", (("customers", "name"),)),
        ("doubled", "amount * 2", (("orders", "amount"),)),
        ("tag", "'x'", ()),
        ("n", "COUNT(*) OVER ()", ()),
    ]
    assert sql_lineage("SELEC nonsense FROM", COLUMNS) is None


def test_one_analysis_gives_the_metadata_and_the_tracker_record():
    columns = sql_lineage("SELECT cust_id, SUM(amount) AS total, COUNT(*) AS n FROM orders GROUP BY 1", COLUMNS)
    assert columns is not None
    # Dagster's lineage leaves out columns without an input column behind them.
    assert table_column_lineage(columns, KEYS).deps_by_column == {
        "cust_id": [dg.TableColumnDep(asset_key=KEYS["orders"], column_name="cust_id")],
        "total": [dg.TableColumnDep(asset_key=KEYS["orders"], column_name="amount")],
    }
    # The tracker record keeps every column and names inputs by dataset.
    assert lineage_record(columns, {"orders": "bronze_orders"}) == [
        {"column": "cust_id", "expression": "cust_id", "sources": [["bronze_orders", "cust_id"]]},
        {"column": "total", "expression": "SUM(amount)", "sources": [["bronze_orders", "amount"]]},
        {"column": "n", "expression": "COUNT(*)", "sources": []},
    ]
