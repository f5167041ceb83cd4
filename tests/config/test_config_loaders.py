"""Loaders: ODIBI's JSON list, pipeline documents in JSON/YAML, SQLite and CSV
``transformation_config`` tables, directories; malformed files give file and line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from config_support import (
    ODIBI_COLUMNS,
    assert_only,
    find,
    good_steps,
    ingest,
    problems_of,
    sql_step,
    store,
)

from odibi_dagster import ConfigValidationError, load_pipeline, load_pipelines

# ODIBI's rows: capitalised values, JSON strings in the JSON columns, NULL/'' where a step has nothing.
ODIBI_ROWS = [
    (
        "Ingest",
        "read_sample_csv",
        "Config_Op",
        "Pandas",
        "data/sample.csv",
        None,
        None,
        '{"data": "raw_data"}',
    ),
    (
        "Transform",
        "filter_high_value",
        "SQL",
        "Pandas",
        "SELECT * FROM data WHERE value > 100 ORDER BY id",
        "",
        '{"data": "raw_data"}',
        '{"data": "filtered_data"}',
    ),
    (
        "Store",
        "write_filtered_parquet",
        "Config_Op",
        "PANDAS",
        "out/filtered.parquet",
        '{"mode": "overwrite"}',
        '{"data": "filtered_data"}',
        "",
    ),
]


def with_project(rows, project, enabled=(1, 1, 1)):
    return [(project, *row, flag) for row, flag in zip(rows, enabled, strict=True)]


PROJECT_COLUMNS = ["project", *ODIBI_COLUMNS, "enabled"]


# --- JSON and YAML -------------------------------------------------------------------------------


def test_json_bare_list_is_odibi_form_named_after_the_file(files) -> None:
    path = files.json(good_steps(), "daily_orders.json")
    [pipeline] = load_pipelines(path)
    assert pipeline.name == "daily_orders"
    assert pipeline.source == path
    assert [s.name for s in pipeline.steps] == ["read", "filter", "write"]
    read = pipeline.step("read")
    # ODIBI's defaults: type config_op, engine pandas, params/inputs/metadata empty.
    assert (read.type, pipeline.step_engine(read), read.params, read.inputs, read.metadata) == (
        "config_op",
        "pandas",
        {},
        {},
        {},
    )


def test_json_pipeline_document(files) -> None:
    path = files.json(
        {
            "pipeline": "sales",
            "engine": "spark",
            "description": "Sales.",
            "schedule": {"cron": "0 2 * * *"},
            "retry": {"max_retries": 2, "delay_seconds": 5},
            "steps": good_steps(),
        },
        "whatever.json",
    )
    pipeline = load_pipeline(path)
    assert pipeline.name == "sales"
    assert pipeline.step_engine(pipeline.step("filter")) == "spark"
    assert pipeline.retry is not None and pipeline.retry.max_retries == 2


def test_yaml_document_and_bare_list(files) -> None:
    doc = files.text(
        """# A medallion in YAML
pipeline: medallion
partitions: {type: daily, start: 2024-01-01}   # an unquoted YAML date
steps:
  - {layer: ingest, name: read, value: "in/{{ partition_key }}.csv", outputs: {data: raw}}
  - layer: transform
    name: filter
    type: sql
    value: |
      SELECT *
      FROM data
      WHERE amount > 0
    inputs: {data: raw}
    outputs: {data: filtered}
  - {layer: store, name: write, value: out.parquet, inputs: {data: filtered}}
""",
        "medallion.yaml",
    )
    bare = files.text(
        "- {layer: ingest, name: read, value: in.csv, outputs: {data: raw}}\n"
        "- {layer: store, name: write, value: out.csv, inputs: {data: raw}}\n",
        "bare_list.yml",
    )
    medallion, bare_list = load_pipelines(doc, bare)
    assert medallion.name == "medallion" and bare_list.name == "bare_list"
    assert medallion.partitions is not None and medallion.partitions.start == "2024-01-01"
    assert [s.line for s in medallion.steps] == [5, 6, 15]
    assert [s.line for s in bare_list.steps] == [1, 2]
    assert medallion.step("filter").value.startswith("SELECT *\nFROM data")


def test_yaml_numbers_become_text_where_text_is_meant(files) -> None:
    path = files.text(
        "pipeline: regions\n"
        "tags: {tier: 1, pii: false}\n"
        "partitions: {type: static, values: [2023, 2024]}\n"
        "steps:\n"
        "  - {layer: ingest, name: read, value: in.csv, outputs: {data: raw}}\n",
        "regions.yaml",
    )
    pipeline = load_pipeline(path)
    assert pipeline.tags == {"tier": "1", "pii": "false"}
    assert pipeline.partitions is not None and pipeline.partitions.values == ["2023", "2024"]


def test_malformed_json_gives_file_and_line(files) -> None:
    path = files.text('[\n  {"layer": "ingest", "name": "a",\n   "value": "x.csv" "outputs": {}}\n]\n', "bad.json")
    [problem] = problems_of(path)
    assert (problem.file, problem.line, problem.step) == (str(path), 3, None)
    assert problem.message.startswith("invalid JSON: Expecting ',' delimiter")
    assert str(problem) == f"{path}:3: {problem.message}"  # no "pipeline: -:" filler for file-level problems


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "pipeline: p\nsteps:\n  - layer: ingest\n    name: a\n   value: x\n",
            5,
            "invalid YAML: expected <block end>",
        ),
        ("pipeline: p\nsteps:\n\t- layer: ingest\n", 3, "invalid YAML: found character '\\t'"),
        ("steps: [\n  {layer: ingest, name: a\n", 3, "invalid YAML"),
        ("pipeline: 'unclosed\nsteps: []\n", 3, "invalid YAML"),
    ],
    ids=["indentation", "tab", "unclosed_flow", "unclosed_quote"],
)
def test_malformed_yaml_gives_file_and_line(files, text: str, line: int, message: str) -> None:
    path = files.text(text, "bad.yaml")
    [problem] = problems_of(path)
    assert (problem.file, problem.line) == (str(path), line)
    assert problem.message.startswith(message)


@pytest.mark.parametrize(("name", "text"), [("e.json", ""), ("e.json", " \n"), ("e.yaml", ""), ("e.yml", "# x\n")])
def test_empty_files(files, name: str, text: str) -> None:
    path = files.text(text, name)
    assert_only(problems_of(path), (None, "steps", "Config is empty - no steps found"), file=path)


def test_json_and_yaml_not_a_list_or_mapping(files) -> None:
    j = files.text('"just a string"', "s.json")
    y = files.text("42\n", "n.yaml")
    assert_only(problems_of(j), (None, None, "JSON config must be an array of steps or an object"), file=j)
    assert_only(problems_of(y), (None, None, "YAML config must be a list of steps or a mapping"), file=y)


def test_duplicate_keys_are_reported(files) -> None:
    y = files.text(
        "steps:\n  - layer: ingest\n    name: read\n    value: a.csv\n    value: b.csv\n    outputs: {data: raw}\n",
        "dupe.yaml",
    )
    [problem] = problems_of(y)
    assert (problem.step, problem.field, problem.line) == ("read", "value", 5)
    assert "duplicate key 'value'" in problem.message
    j = files.text('[{"layer": "ingest", "name": "read", "value": "a.csv", "value": "b.csv", "outputs": {}}]', "d.json")
    problems = problems_of(j)
    find(problems, "read", "value", "duplicate key 'value'")


def test_files_with_a_byte_order_mark_load(files) -> None:
    bom = "\ufeff"
    j = files.text(bom + json.dumps(good_steps()), "bom.json")
    y = files.text(bom + "- {layer: ingest, name: read, value: in.csv, outputs: {data: raw}}\n", "bom.yaml")
    c = files.root / "bom.csv"
    c.write_text(bom + 'Layer,StepName,Value,Outputs\nIngest,read,in.csv,"{""data"": ""raw""}"\n', "utf-8")
    for path in (j, y, c):
        assert load_pipeline(path).steps[0].name == "read"


def test_missing_file_and_unsupported_format(files) -> None:
    missing = files.root / "nope.json"
    assert_only(problems_of(missing), (None, None, "Config source not found"), file=missing)
    toml = files.text("x = 1\n", "pipeline.toml")
    assert_only(problems_of(toml), (None, None, "unsupported config format '.toml'"), file=toml)


def test_undecodable_file(files) -> None:
    path = files.root / "latin1.json"
    path.write_bytes('[{"name": "caf\xe9"}]'.encode("latin-1"))
    assert_only(problems_of(path), (None, None, "cannot decode file"), file=path)


def test_deeply_nested_json_is_a_problem_not_a_crash(files) -> None:
    path = files.text("[" * 100_000 + "]" * 100_000, "deep.json")
    [problem] = problems_of(path)
    assert problem.file == str(path)


# --- SQLite ----------------------------------------------------------------------------------------


def test_sqlite_odibi_table_loads_unchanged(files) -> None:
    path = files.sqlite(ODIBI_ROWS, "odibi.db")
    pipeline = load_pipeline(path)
    assert pipeline.name == "odibi"
    read, filt, write = pipeline.steps
    # 'Ingest', 'SQL', 'Pandas' are lower-cased as ODIBI's loader does.
    assert (read.layer, read.type, read.engine) == ("ingest", "config_op", "pandas")
    assert (filt.layer, filt.type, filt.engine) == ("transform", "sql", "pandas")
    assert (write.layer, write.engine) == ("store", "pandas")
    # NULL and '' in the JSON columns are empty; JSON strings are parsed.
    assert (read.params, read.inputs, read.outputs) == ({}, {}, {"data": "raw_data"})
    assert (filt.params, filt.inputs) == ({}, {"data": "raw_data"})
    assert (write.params, write.outputs) == ({"mode": "overwrite"}, {})
    assert filt.value == "SELECT * FROM data WHERE value > 100 ORDER BY id"
    assert [s.line for s in pipeline.steps] == [1, 2, 3]  # row numbers


def test_sqlite_project_filter_enabled_and_several_projects(files) -> None:
    rows = with_project(ODIBI_ROWS, "sales", enabled=(1, 1, 1)) + with_project(
        [
            ("ingest", "read_stock", "config_op", "pandas", "stock.csv", None, None, '{"data": "stock"}'),
            (
                "store",
                "old_copy",
                "config_op",
                "pandas",
                "",
                None,
                '{"data": "stock"}',
                None,
            ),  # broken, disabled
            (
                "publish",
                "publish_stock",
                "config_op",
                "pandas",
                "out/stock.csv",
                None,
                '{"data": "stock"}',
                None,
            ),
        ],
        "inventory",
        enabled=(1, 0, 1),
    )
    path = files.sqlite(rows, "projects.sqlite", columns=PROJECT_COLUMNS)
    # No filter: one pipeline per project, named after it; enabled = 0 rows are skipped.
    inventory, sales = load_pipelines(path)
    assert (inventory.name, sales.name) == ("inventory", "sales")
    assert [s.name for s in inventory.steps] == ["read_stock", "publish_stock"]
    assert [s.line for s in inventory.steps] == [4, 6]
    # The project filter picks one.
    only = load_pipeline(path, project="inventory")
    assert only.name == "inventory" and len(only.steps) == 2
    # All rows (enabled_only=False): the disabled broken row is validated too.
    problems = problems_of(path, project="inventory", enabled_only=False)
    assert_only(problems, ("old_copy", "value", "store step has an empty value"), file=path)
    assert problems[0].line == 5
    # A table of several projects needs a project for load_pipeline.
    with pytest.raises(ConfigValidationError, match=r"holds 2 pipelines \(inventory, sales\); pass project="):
        load_pipeline(path)
    # An unknown project says which exist.
    assert_only(
        problems_of(path, project="hr"),
        (None, "project", "no enabled rows for project 'hr' (projects in the table: inventory, sales)"),
    )


def test_sqlite_enabled_column_values(files) -> None:
    columns = [*ODIBI_COLUMNS, "Enabled"]
    rows = [
        (*ODIBI_ROWS[0], 1),
        (*ODIBI_ROWS[1], 1),
        (*ODIBI_ROWS[2], 1),
        ("Ingest", "skipped_zero", "Config_Op", "Pandas", "", None, None, None, 0),
        ("Ingest", "skipped_null", "Config_Op", "Pandas", "", None, None, None, None),
    ]
    pipeline = load_pipeline(files.sqlite(rows, "enabled.db", columns=columns))
    assert [s.name for s in pipeline.steps] == [
        "read_sample_csv",
        "filter_high_value",
        "write_filtered_parquet",
    ]


def test_sqlite_rows_without_a_project_are_named_after_the_file(files) -> None:
    rows = with_project(ODIBI_ROWS, None) + with_project(ODIBI_ROWS, "copy")
    names = sorted(p.name for p in load_pipelines(files.sqlite(rows, "mixed.db", columns=PROJECT_COLUMNS)))
    assert names == ["copy", "mixed"]


def test_sqlite_problems(files) -> None:
    bad_json = files.sqlite(
        [("Ingest", "read", "Config_Op", "Pandas", "in.csv", "{'mode': 'x'}", None, '{"data": "raw"}')],
        "badjson.db",
    )
    [problem] = problems_of(bad_json)
    assert (problem.step, problem.field, problem.line) == ("read", "params", 1)
    assert problem.message.startswith("invalid JSON in column")
    no_table = files.sqlite([], "other.db", table="steps")
    assert_only(problems_of(no_table), (None, "transformation_config", "cannot read table transformation_config"))
    no_cols = files.sqlite([("x", "y")], "nocols.db", columns=["Kind", "Title"])
    assert_only(problems_of(no_cols), (None, "transformation_config", "missing column(s): layer, stepname"))
    empty = files.sqlite([], "empty.db")
    assert_only(problems_of(empty), (None, "steps", "Config is empty - no steps found"))
    not_db = files.text("this is not a database\n" * 100, "text.db")
    assert_only(problems_of(not_db), (None, "transformation_config", "cannot read table transformation_config"))
    no_project_col = files.sqlite(ODIBI_ROWS, "noproj.db")
    assert_only(
        problems_of(no_project_col, project="sales"),
        (None, "project", "project 'sales' given, but the table has no 'project' column"),
    )


def test_sqlite_file_is_not_modified(files) -> None:
    path = files.sqlite(ODIBI_ROWS, "ro.db")
    before = path.read_bytes()
    load_pipeline(path)
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM transformation_config").fetchone() == (3,)


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_same_columns_as_odibi_table(files) -> None:
    path = files.csv(ODIBI_ROWS, "odibi_steps.csv")
    pipeline = load_pipeline(path)
    assert pipeline.name == "odibi_steps"
    assert [(s.layer, s.type, s.engine) for s in pipeline.steps] == [
        ("ingest", "config_op", "pandas"),
        ("transform", "sql", "pandas"),
        ("store", "config_op", "pandas"),
    ]
    assert pipeline.step("write_filtered_parquet").params == {"mode": "overwrite"}
    assert [s.line for s in pipeline.steps] == [2, 3, 4]  # line 1 is the header


def test_csv_project_and_enabled(files) -> None:
    rows = with_project(ODIBI_ROWS, "a") + with_project(ODIBI_ROWS, "b", enabled=("true", "1", "no"))
    path = files.csv(rows, "two.csv", columns=PROJECT_COLUMNS)
    a, b = load_pipelines(path)
    assert (a.name, len(a.steps)) == ("a", 3)
    assert (b.name, [s.name for s in b.steps]) == ("b", ["read_sample_csv", "filter_high_value"])
    assert len(load_pipeline(path, project="b", enabled_only=False).steps) == 3
    # A disabled producer: its consumers' inputs are not produced.
    rows = with_project(ODIBI_ROWS, "c", enabled=("1", "0", "1"))
    problems = problems_of(files.csv(rows, "three.csv", columns=PROJECT_COLUMNS), project="c")
    assert_only(
        problems,
        ("write_filtered_parquet", "inputs.data", "Input 'filtered_data' is not produced by any step"),
    )
    assert problems[0].line == 4


def test_csv_header_spellings(files) -> None:
    path = files.csv(
        ODIBI_ROWS, "spelled.csv", columns=["layer", "step_name", "Step Type", "ENGINE", *ODIBI_COLUMNS[4:]]
    )
    assert len(load_pipeline(path).steps) == 3


def test_csv_problems_name_file_step_and_line(files) -> None:
    rows = [
        *ODIBI_ROWS[:2],
        ("Stor", "write", "Config_Op", "Pandas", "out.csv", "", '{"data": "filtered_data"}', ""),
    ]
    path = files.csv(rows, "typo.csv")
    [problem] = problems_of(path)
    assert (problem.file, problem.step, problem.field, problem.line) == (str(path), "write", "layer", 4)
    assert "invalid layer: 'stor'" in problem.message
    unquoted = files.text(
        "Layer,StepName,StepType,Engine,Value,Params,Inputs,Outputs\n"
        'Ingest,read,config_op,pandas,in.csv,,,{"data": "raw", "copy": "raw2"}\n',
        "unquoted.csv",
    )
    problems = problems_of(unquoted)
    find(problems, "read", None, "row has more fields than the header")
    assert all(p.file == str(unquoted) for p in problems)


def test_csv_without_step_columns(files) -> None:
    path = files.csv([(1, 2)], "data.csv", columns=["id", "value"])
    assert_only(problems_of(path), (None, None, "missing column(s): layer, stepname"), file=path)


# --- directories -----------------------------------------------------------------------------------


def test_directory_loads_every_config_and_skips_data_files(files) -> None:
    files.json(good_steps(), "a_simple.json")
    files.yaml({"pipeline": "b_doc", "steps": good_steps()}, "b.yaml")
    files.sqlite(ODIBI_ROWS, "c_table.db")
    files.csv(ODIBI_ROWS, "d_table.csv")
    # Data and other files next to the configs are not configs.
    files.csv([(1, 150), (2, 50)], "sample.csv", columns=["id", "value"])
    files.json([{"id": 1, "value": 150}], "records.json")
    files.json({"rows": [1, 2]}, "settings.json")
    files.text("type: odibi_dagster.OdibiPipelineComponent\nattributes: {}\n", "defs.yaml")
    files.text("def f(df):\n    return df\n", "funcs.py")
    files.text("notes\n", "README.txt")
    files.sqlite([(1, "north")], "warehouse.db", columns=["id", "region"], table="orders")  # a data database
    files.text("not sqlite\n", "cache.sqlite")
    files.json(good_steps(), ".hidden.json")
    files.json(good_steps(), "sub/nested.json")  # sub-folders are scanned too
    files.json(good_steps(), ".odibi/stories/x.json")  # hidden folders (working files) are not
    names = [p.name for p in load_pipelines(files.root)]
    assert names == ["a_simple", "b_doc", "c_table", "d_table", "nested"]


def test_directory_reports_broken_configs(files) -> None:
    files.json(good_steps(), "ok.json")
    broken = files.text("[{", "broken.json")
    typo = files.json([ingest(layer="ingset"), sql_step(), store()], "typo.json")
    problems = problems_of(files.root)
    assert {p.file for p in problems} == {str(broken), str(typo)}


def test_empty_directory_and_several_paths(files, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_only(problems_of(empty), (None, None, "no config files found"), file=empty)
    one = files.json(good_steps(), "one.json")
    two = files.yaml(good_steps(), "two.yaml")
    assert [p.name for p in load_pipelines(one, two)] == ["one", "two"]


def test_a_file_named_twice_is_loaded_once(files) -> None:
    path = files.json(good_steps(), "once.json")
    assert [p.name for p in load_pipelines(files.root, path, str(path))] == ["once"]


def test_json_lines_of_steps_without_a_name(files) -> None:
    text = """{
  "pipeline": "p",
  "steps": [
    {"layer": "ingest", "name": "read",
     "value": "a.csv", "outputs": {"data": "raw"}},
    {"layer": "store",
     "value": "o.csv", "inputs": {"data": "raw"}},
    "junk"
  ]
}
"""
    path = files.text(text, "lines.json")
    problems = problems_of(path)
    assert_only(
        problems,
        ("#2", "name", "missing required field 'name'"),
        ("#3", None, "a step must be a mapping, got str"),
        file=path,
    )
    assert [p.line for p in problems] == [6, 8]


def test_pipeline_settings_carry_the_line_of_their_key(files) -> None:
    y = files.text(
        "pipeline: p\n# the schedule\nschedule: {cron: '61 * * * *'}\nowners: [bob]\nsteps:\n"
        "  - {layer: ingest, name: read, value: in.csv, outputs: {data: raw}}\n",
        "keys.yaml",
    )
    j = files.json({"pipeline": "q", "owners": ["bob"], "steps": good_steps()}, "keys.json")
    by_field = {p.field: p.line for p in problems_of(y)}
    assert by_field == {"schedule.cron": 3, "owners[0]": 4}
    [problem] = problems_of(j)
    assert (problem.field, problem.line) == ("owners[0]", 3)
