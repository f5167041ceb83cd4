"""ODIBI CORE's own sample configs load unchanged (JSON, SQLite, CSV), and configs a user
might write that we have not seen: nulls, metadata, real-world SQL in both dialects, templates."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from config_support import assert_only, find, ingest, problems_of, sql_step, store

from odibi_dagster import load_pipeline, validate_pipeline
from odibi_dagster.config.sql import parse_sql, referenced_tables
from odibi_dagster.config.templating import render_sql, sql_literal

# Mission 12 of the Phase 3 walkthrough, verbatim.
SIMPLE_PIPELINE_JSON = """[
  {
    "layer": "ingest",
    "name": "read_sample_csv",
    "type": "config_op",
    "engine": "pandas",
    "value": "odibi_core/examples/data/sample.csv",
    "outputs": {"data": "raw_data"}
  },
  {
    "layer": "transform",
    "name": "filter_high_value",
    "type": "sql",
    "engine": "pandas",
    "value": "SELECT * FROM data WHERE value > 100 ORDER BY id",
    "inputs": {"data": "raw_data"},
    "outputs": {"data": "filtered_data"}
  },
  {
    "layer": "store",
    "name": "write_filtered_parquet",
    "type": "config_op",
    "engine": "pandas",
    "value": "odibi_core/examples/output/filtered.parquet",
    "inputs": {"data": "filtered_data"}
  }
]
"""

# "After Phase 3 (Config)" in the walkthrough's overview, verbatim.
OVERVIEW_JSON = """[
  {"layer": "ingest", "name": "read", "value": "data.csv", "outputs": {"data": "raw"}},
  {"layer": "transform", "name": "filter", "type": "sql",
   "value": "SELECT * FROM data WHERE value > 100",
   "inputs": {"data": "raw"}, "outputs": {"data": "filtered"}},
  {"layer": "store", "name": "write", "value": "output.parquet", "inputs": {"data": "filtered"}}
]
"""

# Example 1 of the framework guide (Step(...) objects written as JSON).
EXAMPLE_1 = [
    {
        "layer": "ingest",
        "name": "read_csv",
        "type": "config_op",
        "engine": "pandas",
        "value": "data/input.csv",
        "outputs": {"data": "raw_data"},
    },
    {
        "layer": "transform",
        "name": "filter_records",
        "type": "sql",
        "engine": "pandas",
        "value": "SELECT * FROM raw WHERE value > 100",
        "inputs": {"raw": "raw_data"},
        "outputs": {"data": "filtered_data"},
    },
    {
        "layer": "store",
        "name": "save_parquet",
        "type": "config_op",
        "engine": "pandas",
        "value": "output/filtered.parquet",
        "inputs": {"data": "filtered_data"},
    },
]

# Example 2 of the framework guide: the Spark medallion, with its triple-quoted SQL.
CLEAN_SQL = """
            SELECT 
                transaction_id,
                CAST(amount AS DOUBLE) as amount,
                to_date(transaction_date, 'yyyy-MM-dd') as transaction_date,
                customer_id
            FROM bronze
            WHERE amount IS NOT NULL AND amount > 0
        """  # noqa: W291 - verbatim, trailing space included
AGGREGATE_SQL = """
            SELECT 
                transaction_date,
                customer_id,
                COUNT(*) as transaction_count,
                SUM(amount) as total_amount,
                AVG(amount) as avg_amount
            FROM silver
            GROUP BY transaction_date, customer_id
        """  # noqa: W291
EXAMPLE_2 = [
    {
        "layer": "ingest",
        "name": "ingest_transactions",
        "type": "config_op",
        "engine": "spark",
        "value": "data/raw/transactions.csv",
        "outputs": {"data": "bronze_transactions"},
    },
    {
        "layer": "store",
        "name": "save_bronze",
        "type": "config_op",
        "engine": "spark",
        "value": "delta/bronze/transactions",
        "inputs": {"data": "bronze_transactions"},
        "params": {"mode": "overwrite", "source_type": "delta"},
    },
    {
        "layer": "transform",
        "name": "clean_transactions",
        "type": "sql",
        "engine": "spark",
        "value": CLEAN_SQL,
        "inputs": {"bronze": "bronze_transactions"},
        "outputs": {"data": "silver_transactions"},
    },
    {
        "layer": "store",
        "name": "save_silver",
        "type": "config_op",
        "engine": "spark",
        "value": "delta/silver/transactions",
        "inputs": {"data": "silver_transactions"},
        "params": {"mode": "overwrite", "source_type": "delta"},
    },
    {
        "layer": "transform",
        "name": "aggregate_daily",
        "type": "sql",
        "engine": "spark",
        "value": AGGREGATE_SQL,
        "inputs": {"silver": "silver_transactions"},
        "outputs": {"data": "gold_daily_summary"},
    },
    {
        "layer": "publish",
        "name": "publish_gold",
        "type": "config_op",
        "engine": "spark",
        "value": "delta/gold/daily_summary",
        "inputs": {"data": "gold_daily_summary"},
        "params": {"mode": "append", "source_type": "delta"},
    },
]


def as_rows(steps: list[dict[str, Any]], capitalise: bool = False) -> list[tuple[Any, ...]]:
    """Steps as ODIBI transformation_config rows (JSON strings, NULL where empty)."""

    def cap(v: str) -> str:
        return {"sql": "SQL", "config_op": "Config_Op"}.get(v, v.capitalize()) if capitalise else v

    def js(v: Any) -> str | None:
        return json.dumps(v) if v else None

    return [
        (
            cap(s["layer"]),
            s["name"],
            cap(s.get("type", "config_op")),
            cap(s.get("engine", "pandas")),
            s.get("value", ""),
            js(s.get("params")),
            js(s.get("inputs")),
            js(s.get("outputs")),
        )
        for s in steps
    ]


def test_simple_pipeline_json_from_mission_12(files) -> None:
    path = files.text(SIMPLE_PIPELINE_JSON, "simple_pipeline.json")
    pipeline = load_pipeline(path)
    assert pipeline.name == "simple_pipeline"
    assert [(s.name, s.layer, s.type) for s in pipeline.steps] == [
        ("read_sample_csv", "ingest", "config_op"),
        ("filter_high_value", "transform", "sql"),
        ("write_filtered_parquet", "store", "config_op"),
    ]
    assert {ds: s.name for s in pipeline.steps for ds in s.outputs.values()}["filtered_data"] == "filter_high_value"
    assert [s.line for s in pipeline.steps] == [4, 12, 21]


def test_walkthrough_overview_and_mission_14_configs(files) -> None:
    assert len(load_pipeline(files.text(OVERVIEW_JSON, "pipeline.json")).steps) == 3
    mission_14 = [{"name": "read", "layer": "ingest", "value": "input.csv", "outputs": {"data": "raw"}}]
    assert load_pipeline(files.json(mission_14, "config.json")).steps[0].name == "read"


def test_mission_14_cycle_is_reported_in_odibi_words(files) -> None:
    # Step(name=..., inputs=..., outputs=...) with ODIBI's defaults (layer transform, type config_op).
    steps = [
        {"name": "step1", "inputs": {"x": "out2"}, "outputs": {"x": "out1"}},
        {"name": "step2", "inputs": {"x": "out1"}, "outputs": {"x": "out2"}},
    ]
    problems = problems_of(files.json(steps, "cycle.json"))
    find(problems, "step1", "inputs", "Circular dependency: step1 → step2 → step1")


def test_walkthrough_steps_without_names_are_reported(files) -> None:
    # The "Config as data" sketch leaves names out: ODIBI raises KeyError, we name each step.
    sketch = [
        {"layer": "ingest", "value": "input.csv"},
        {"layer": "transform", "type": "sql", "value": "SELECT * FROM data WHERE value > 100"},
        {"layer": "store", "value": "output.parquet"},
    ]
    path = files.json(sketch, "sketch.json")
    assert_only(
        problems_of(path),
        ("#1", "name", "missing required field 'name'"),
        ("#2", "name", "missing required field 'name'"),
        ("#3", "name", "missing required field 'name'"),
        file=path,
    )


@pytest.mark.parametrize("fmt", ["json", "sqlite", "csv", "sqlite_capitalised", "csv_capitalised"])
@pytest.mark.parametrize("example", ["example_1", "example_2"])
def test_framework_guide_examples_in_every_format(files, example: str, fmt: str) -> None:
    steps = EXAMPLE_1 if example == "example_1" else EXAMPLE_2
    if fmt == "json":
        path = files.json(steps, f"{example}.json")
    elif fmt.startswith("sqlite"):
        path = files.sqlite(as_rows(steps, "capitalised" in fmt), f"{example}.db")
    else:
        path = files.csv(as_rows(steps, "capitalised" in fmt), f"{example}.csv")
    pipeline = load_pipeline(path)
    assert pipeline.name == example
    assert [s.name for s in pipeline.steps] == [s["name"] for s in steps]
    for loaded, original in zip(pipeline.steps, steps, strict=True):
        assert (loaded.layer, loaded.type, loaded.engine) == (
            original["layer"],
            original["type"],
            original["engine"],
        )
        assert loaded.value == original["value"]
        assert loaded.params == original.get("params", {})
        assert loaded.inputs == original.get("inputs", {})
        assert loaded.outputs == original.get("outputs", {})


def test_example_2_sql_is_checked_in_the_spark_dialect(files) -> None:
    broken = [dict(s) for s in EXAMPLE_2]
    broken[2]["value"] = CLEAN_SQL.replace("FROM bronze", "FROM bronze_transactions")
    broken[4]["value"] = AGGREGATE_SQL.replace("GROUP BY", "GROUP")
    path = files.json(broken, "example_2.json")
    assert_only(
        problems_of(path),
        (
            "clean_transactions",
            "value",
            "SQL names table 'bronze_transactions' which is not one of the step's inputs (bronze)",
        ),
        ("aggregate_daily", "value", "SQL does not parse (spark dialect)"),
        file=path,
    )


# --- what users write that the samples do not show -------------------------------------------------


def test_nulls_numbers_and_metadata(files) -> None:
    steps = [
        {
            "layer": "ingest",
            "name": "read",
            "type": "config_op",
            "engine": "pandas",
            "value": "in.csv",
            "params": None,
            "inputs": None,
            "outputs": {"data": "raw"},
            "metadata": {"description": "Raw export", "owner": "ana@example.com", "tags": {"tier": "bronze"}},
        },
        {
            "layer": "store",
            "name": "write",
            "value": "out.csv",
            "params": None,
            "inputs": {"data": "raw"},
            "outputs": None,
            "metadata": None,
        },
    ]
    pipeline = load_pipeline(files.json(steps, "nulls.json"))
    assert (pipeline.steps[0].params, pipeline.steps[0].inputs, pipeline.steps[1].outputs) == ({}, {}, {})
    assert pipeline.steps[0].metadata["description"] == "Raw export"
    # value: null on a store, a number as a path: clear messages.
    bad = [dict(steps[0], value=2024), dict(steps[1], value=None)]
    path = files.json(bad, "bad_values.json")
    assert_only(
        problems_of(path),
        ("read", "value", "Input should be a valid string (got int: 2024)"),
        ("write", "value", "store step has an empty value"),
        file=path,
    )


DUCKDB_SQL = [
    "WITH recent AS (SELECT * FROM orders WHERE ts > now() - INTERVAL 7 DAY) SELECT * FROM RECENT",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r, orders",
    "SELECT o.*, c.name FROM orders o LEFT JOIN customers AS c ON o.customer_id = c.id",
    "SELECT * FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE active)",
    "SELECT * FROM (SELECT customer_id, SUM(amount) AS total FROM orders GROUP BY ALL) t WHERE total > 10",
    'SELECT "order id", "Amount (EUR)" FROM "orders"',
    "SELECT * FROM ORDERS JOIN Customers USING (customer_id)",
    "SELECT strftime(ts, '%Y-%m-%d') AS day, date_trunc('month', ts) AS month FROM orders",
    "SELECT * FROM read_csv('lookup/*.csv', header = true) l JOIN orders o ON o.k = l.k",
    "SELECT * FROM read_parquet(['a.parquet', 'b.parquet'])",
    "SELECT * FROM 'reference/regions.parquet' r JOIN orders USING (region)",
    "SELECT * EXCLUDE (secret) REPLACE (amount * 100 AS amount) FROM orders",
    "SELECT * FROM orders QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY ts DESC) = 1",
    "PIVOT orders ON region USING sum(amount)",
    "FROM orders SELECT customer_id, list(amount) AS amounts, amount::DECIMAL(10, 2) AS a",
    "SELECT * FROM orders, unnest([1, 2, 3]) AS t(x)",
    "SELECT * FROM generate_series(1, 10) g(i) JOIN orders ON orders.n = g.i",
    "-- daily totals\nSELECT customer_id, /* all */ count(*) FROM orders GROUP BY 1;",
    "SELECT {'a': 1, 'b': [1, 2]} AS s, regexp_matches(name, '^A') FROM customers",
]

SPARK_SQL = [
    "SELECT `order id`, to_date(ts, 'yyyy-MM-dd') AS day FROM orders",
    "SELECT * FROM `orders` o JOIN customers c ON o.customer_id = c.id",
    "SELECT customer_id, explode(items) AS item FROM orders",
    "SELECT * FROM orders LATERAL VIEW explode(items) t AS item",
    "SELECT * FROM parquet.`/data/reference/regions` r JOIN orders USING (region)",
    "SELECT * FROM delta.`abfss://lake@acct.dfs.core.windows.net/silver/customers`",
    "SELECT /*+ BROADCAST(c) */ * FROM orders o JOIN customers c ON o.k = c.k DISTRIBUTE BY o.k",
    "WITH t AS (SELECT *, row_number() OVER (PARTITION BY k ORDER BY ts) AS rn FROM orders) SELECT * FROM t",
    'SELECT date_format(ts, "yyyy-MM") AS month, collect_list(amount) FROM orders GROUP BY 1',
    "SELECT * FROM orders WHERE name RLIKE '^A.*' AND ts > date_sub(current_date(), 7)",
    "SELECT from_json(payload, 'a INT, b STRING') AS parsed FROM orders",
]


def two_inputs(sql: str, engine: str) -> list[dict[str, Any]]:
    return [
        ingest("read_orders", out="orders_raw"),
        ingest("read_customers", value="customers.csv", out="customers_raw"),
        sql_step(
            "combine",
            sql,
            inputs={"orders": "orders_raw", "customers": "customers_raw"},
            out="combined",
            engine=engine,
        ),
        store(dataset="combined"),
    ]


@pytest.mark.parametrize("sql", DUCKDB_SQL)
def test_duckdb_sql_that_users_write_is_accepted(files, sql: str) -> None:
    load_pipeline(files.json(two_inputs(sql, "pandas"), "duck.json"))


@pytest.mark.parametrize("sql", SPARK_SQL)
def test_spark_sql_that_users_write_is_accepted(files, sql: str) -> None:
    load_pipeline(files.json(two_inputs(sql, "spark"), "spark.json"))


@pytest.mark.parametrize(
    ("sql", "engine", "table"),
    [
        ("SELECT * FROM orders JOIN products USING (sku)", "pandas", "products"),
        ("WITH x AS (SELECT 1) SELECT * FROM y", "pandas", "y"),
        ("SELECT * FROM warehouse.orders", "pandas", "warehouse.orders"),
        ("SELECT * FROM orders WHERE id IN (SELECT id FROM refunds)", "spark", "refunds"),
        ("SELECT * FROM prod.sales.orders", "spark", "prod.sales.orders"),
        ("SELECT * FROM `orders_raw`", "spark", "orders_raw"),
    ],
)
def test_sql_naming_a_table_that_is_not_an_input(files, sql: str, engine: str, table: str) -> None:
    path = files.json(two_inputs(sql, engine), "t.json")
    assert_only(
        problems_of(path),
        (
            "combine",
            "value",
            f"SQL names table '{table}' which is not one of the step's inputs (customers, orders)",
        ),
        file=path,
    )


@pytest.mark.parametrize(
    "query",
    [
        "SELECT TOP 10 * FROM [dbo].[orders] WITH (NOLOCK)",  # SQL Server
        "SELECT id::int, name FROM public.orders WHERE name ILIKE 'a%'",  # Postgres
        "SELECT * FROM orders WHERE ts > {{ run_id }}",
    ],
)
def test_ingest_queries_run_on_their_source_database(files, query: str) -> None:
    """An ingest step of type sql reads its connection's tables (not step inputs), in the source's dialect."""
    steps = [
        {"layer": "connect", "name": "warehouse", "value": "mssql+pyodbc://{{ env.DB_USER }}@dsn"},
        ingest(type="sql", value=query, params={"connection": "warehouse"}),
        store(dataset="raw"),
    ]
    load_pipeline(files.json(steps, "query.json"))


def test_templates_in_paths_sql_and_params(files, monkeypatch) -> None:
    monkeypatch.delenv("ODIBI_TEST_UNSET_VAR", raising=False)
    doc = {
        "pipeline": "templated",
        "partitions": {"type": "daily", "start": "2024-01-01"},
        "steps": [
            ingest(
                value="landing/{{ partition_key }}/orders_*.csv",
                params={"delimiter": "{{ env.ODIBI_TEST_UNSET_VAR }}"},
                out="orders_raw",
            ),
            ingest("read_fx", value="fx/{{ partition_key[:7] }}.parquet", out="fx"),
            sql_step(
                "daily",
                "SELECT *, {{ run_id }} AS run_id FROM orders "
                "JOIN read_csv('rates/{{ partition_key }}.csv') USING (currency) "
                "WHERE ts >= {{ partition_start }} AND ts < {{ partition_end }} "
                "AND note <> '{{ run_id }}' AND day = '{{ partition_key | replace(\"-\", \"\") }}'",
                inputs={"orders": "orders_raw", "fx": "fx"},
                out="daily",
            ),
            store(value="out/{{ partition_key }}/daily.parquet", dataset="daily"),
        ],
    }
    # Environment variables need not be set at validation time.
    load_pipeline(files.yaml(doc, "templated.yaml"))


# --- units: SQL tables and SQL templating -------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "dialect", "tables"),
    [
        ("WITH A AS (SELECT * FROM data) SELECT * FROM a", "duckdb", {"data"}),
        ("SELECT * FROM 'x/*.parquet', data", "duckdb", {"data"}),
        ('SELECT * FROM "data.csv"', "duckdb", set()),
        ('SELECT * FROM "my data"', "duckdb", {"my data"}),
        ("SELECT * FROM csv.`/tmp/x.csv` JOIN data ON true", "spark", {"data"}),
        ("SELECT * FROM db.`weird name`", "spark", {"db.weird name"}),
        ("SELECT * FROM read_json_auto('x.json')", "duckdb", set()),
    ],
)
def test_referenced_tables(sql: str, dialect: str, tables: set[str]) -> None:
    assert referenced_tables(parse_sql(sql, dialect), dialect) == tables


def test_render_sql_quotes_values_and_respects_string_literals() -> None:
    values = {"partition_key": "2024-01-01", "run_id": "it's; DROP TABLE x; --", "n": 3, "env": {"V": "a\\b"}}
    assert render_sql("SELECT * FROM t WHERE d = {{ partition_key }}", values) == (
        "SELECT * FROM t WHERE d = '2024-01-01'"
    )
    # Inside a string literal: the escaped text, no extra quotes.
    assert render_sql("SELECT * FROM read_csv('in/{{ partition_key }}.csv')", values) == (
        "SELECT * FROM read_csv('in/2024-01-01.csv')"
    )
    assert render_sql("SELECT '{{ run_id }}' AS r, {{ run_id }} AS q, {{ n }} AS n", values) == (
        "SELECT 'it''s; DROP TABLE x; --' AS r, 'it''s; DROP TABLE x; --' AS q, 3 AS n"
    )
    # Comments and quoted identifiers do not open strings; '' inside a string is a quote.
    assert render_sql("SELECT \"it's\" -- don't\n, 'a''{{ n }}'", values) == "SELECT \"it's\" -- don't\n, 'a''3'"
    # Spark: backslash escapes, double-quoted strings, backticked identifiers.
    assert render_sql('SELECT {{ run_id }}, "{{ run_id }}", `{{ n }}`', values, "spark") == (
        "SELECT 'it\\'s; DROP TABLE x; --', \"it's; DROP TABLE x; --\", `3`"
    )
    assert render_sql("SELECT '{{ env.V }}'", values, "spark") == "SELECT 'a\\\\b'"
    assert render_sql("SELECT '{{ env.V }}'", values) == "SELECT 'a\\b'"
    # Whitespace control and filters inside a string.
    assert render_sql("SELECT '{{- partition_key | replace('-', '') -}}'", values) == "SELECT '20240101'"
    # Whatever the value, the rendered SQL parses with the template's own statement count.
    for dialect in ("duckdb", "spark"):
        rendered = render_sql("SELECT {{ run_id }} AS a, 'x{{ run_id }}' AS b", values, dialect)
        assert len(parse_sql(rendered, dialect)) == 1


def test_sql_literal_in_spark_keeps_quotes() -> None:
    # Spark reads 'it''s' as two adjacent literals ("its"): the quote is backslash-escaped.
    assert sql_literal("it's", "spark") == "'it\\'s'"
    assert sql_literal("it's") == "'it''s'"
    assert sql_literal(None) == "NULL" and sql_literal(True) == "TRUE" and sql_literal(2.5) == "2.5"
    assert sql_literal(["a", 1]) == "('a', 1)"


def test_in_memory_configs(tmp_path) -> None:
    """validate_pipeline takes ODIBI's list, a document, or Step models."""
    steps = json.loads(SIMPLE_PIPELINE_JSON)
    assert validate_pipeline(steps).name == "pipeline"
    assert validate_pipeline({"pipeline": "x", "steps": steps}).name == "x"
    models = validate_pipeline(steps).steps
    assert [s.name for s in validate_pipeline(models).steps] == [s["name"] for s in steps]
    text = textwrap.dedent(CLEAN_SQL)
    assert "to_date" in text
