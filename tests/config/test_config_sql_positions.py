"""A template value can never change a SQL statement's structure, wherever the template sits:
bare, in '...', in E'...', in a quoted identifier, in a comment. Positions nothing can be
escaped in ($$...$$, Spark's r'...') are rejected at validation, naming step and field."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import sqlglot
import yaml

from odibi_dagster import ConfigValidationError, build_definitions, load_pipelines
from odibi_dagster.config.templating import UnsafeTemplate, render_sql, sql_literal

HOSTILE = [
    'q", 42 AS "injected',
    "x'); DROP TABLE t; --",
    "a\\b'c\\",
    "line\nSELECT 2 AS v; --",
    "*/ SELECT 2 AS v; /*",
    "$$ || upper($$inj$$) || $$",
    "`tick` 'quote' \"dq\" \\",
]

# (template, how the one-row result must look for value k)
POSITIONS = [
    ("SELECT {{ k }} AS v", lambda k: ([(k,)], ["v"])),
    ("SELECT '{{ k }}' AS v", lambda k: ([(k,)], ["v"])),
    ("SELECT 'pre ''{{ k }}'' post' AS v", lambda k: ([(f"pre '{k}' post",)], ["v"])),
    ("SELECT E'{{ k }}' AS v", lambda k: ([(k,)], ["v"])),
    ('SELECT 1 AS "{{ k }}"', lambda k: ([(1,)], [k])),
    ("-- partition {{ k }}\nSELECT 1 AS v", lambda k: ([(1,)], ["v"])),
    ("/* partition {{ k }} */ SELECT 1 AS v", lambda k: ([(1,)], ["v"])),
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(("template", "expected"), POSITIONS, ids=[p[0] for p in POSITIONS])
def test_a_hostile_value_renders_as_data_in_every_position(template: str, expected, value: str) -> None:
    rendered = render_sql(template, {"k": value})
    result = duckdb.sql(rendered)
    assert (result.fetchall(), result.columns) == expected(value), rendered


@pytest.mark.parametrize("value", HOSTILE)
def test_spark_positions_keep_the_statement_shape(value: str) -> None:
    for template in (
        "SELECT `{{ k }}` FROM t",
        "SELECT '{{ k }}' AS v",
        'SELECT "{{ k }}" AS v',
        "SELECT {{ k }} AS v",
        "-- {{ k }}\nSELECT 1 AS v",
        "/* {{ k }} */ SELECT 1 AS v",
    ):
        statements = sqlglot.parse(render_sql(template, {"k": value}, "spark"), read="spark")
        assert len(statements) == 1 and len(statements[0].expressions) == 1, template


@pytest.mark.parametrize(
    ("template", "dialect"),
    [
        ("SELECT $${{ k }}$$", "duckdb"),
        ("SELECT $body$ day {{ k }} $body$", "duckdb"),
        ("SELECT r'{{ k }}'", "spark"),
    ],
)
def test_positions_that_cannot_be_escaped_are_refused(template: str, dialect: str) -> None:
    with pytest.raises(UnsafeTemplate, match="cannot be escaped"):
        render_sql(template, {"k": "x"}, dialect)


def test_one_sql_literal_renders_lists_for_in_and_for_arrays() -> None:
    assert sql_literal(["a", "b'"]) == "('a', 'b''')"
    assert sql_literal(["a", 1], lists="array") == "['a', 1]"
    assert sql_literal({"k": [1, None]}, lists="array") == "{'k': [1, NULL]}"
    in_list = sql_literal(["a", "b'"])
    assert duckdb.sql(f"SELECT 'b''' IN {in_list} AS v").fetchall() == [(True,)]


def _pipeline(tmp_path: Path, sql: str, partitions: dict | None = None) -> Path:
    (tmp_path / "in.csv").write_text("id\n1\n")
    config = tmp_path / "p.yaml"
    doc: dict = {
        "pipeline": "keys",
        "steps": [
            {"name": "read", "layer": "ingest", "value": "in.csv", "outputs": {"data": "raw"}},
            {
                "name": "pick",
                "layer": "transform",
                "type": "sql",
                "value": sql,
                "inputs": {"raw": "raw"},
                "outputs": {"data": "picked"},
            },
            {"name": "save", "layer": "store", "value": "out.parquet", "inputs": {"data": "picked"}},
        ],
    }
    if partitions:
        doc["partitions"] = partitions
    config.write_text(yaml.safe_dump(doc))
    return config


def test_a_dollar_quoted_template_is_rejected_at_validation_naming_step_and_field(tmp_path: Path) -> None:
    config = _pipeline(tmp_path, "SELECT $${{ partition_key }}$$ AS v FROM raw", {"type": "static", "values": ["a"]})
    with pytest.raises(ConfigValidationError) as err:
        load_pipelines(config)
    [problem] = err.value.problems
    assert (problem.step, problem.field) == ("pick", "value")
    assert "dollar-quoted string" in problem.message and "cannot be escaped" in problem.message


def test_hostile_dynamic_partition_keys_reach_every_position_as_data(tmp_path: Path) -> None:
    # Dynamic partition keys come from file names a sensor saw: anybody who can drop a file picks them.
    key = 'q", 42 AS "injected\' E\\'
    sql = (
        "-- day {{ partition_key }}\n"
        "SELECT '{{ partition_key }}' AS a, E'{{ partition_key }}' AS b, {{ partition_key }} AS c, "
        '1 AS "{{ partition_key }}" /* {{ partition_key }} */ FROM raw'
    )
    config = _pipeline(tmp_path, sql, {"type": "dynamic", "name": "files"})
    defs = build_definitions(config, base_dir=tmp_path)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("files", [key])
        result = defs.resolve_job_def("keys").execute_in_process(instance=instance, partition_key=key)
    assert result.success
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["a", "b", "c", key]
    assert out.iloc[0, :3].tolist() == [key, key, key]
