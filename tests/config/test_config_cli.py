"""``odibi-dagster validate`` and ``odibi-dagster schema``: exit codes, one line per problem,
no traceback, and a JSON Schema that accepts good documents and rejects bad ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from config_support import ODIBI_COLUMNS, good_steps, ingest, sql_step, store

from odibi_dagster.cli import main

# FILE[:LINE]: step 'NAME': FIELD: message   (pipeline-wide problems say "pipeline"; problems of
# the file itself, such as invalid JSON, are FILE[:LINE]: message)
LINE = re.compile(
    r"^(?P<file>[^:]+)(?::(?P<line>\d+))?: (?:(?:step '(?P<step>.*)'|pipeline): (?P<field>[^:]+): )?"
    r"(?!ok: )(?P<msg>.+)$"
)
CONSOLE_SCRIPT = Path(sys.executable).with_name("odibi-dagster")


def run_main(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def bad_configs(files) -> dict[str, Path]:
    return {
        "json": files.json([ingest(layer="Ingest"), sql_step(sql="SELECT * FROM nope"), store(value="")], "bad.json"),
        "yaml": files.text("pipeline: p\nsteps:\n  - layer: ingest\n    name: a\n   value: x\n", "broken.yaml"),
        "db": files.sqlite([("Transform", "t", "SQL", "Pandas", "SELECT 1", None, None, '{"data": "x"}')], "bad.db"),
    }


def _sources(files) -> None:
    """The files the configs of these tests read: `validate` checks that sources exist."""
    for name in ("data.csv", "in.csv", "people.csv"):
        (files.root / name).write_text("id,value\n1,150\n2,50\n")


def test_validate_accepts_good_configs(files, capsys) -> None:
    _sources(files)
    good = files.json(good_steps(), "good.json")
    table = files.sqlite(
        [
            ("Ingest", "read", "Config_Op", "Pandas", "in.csv", None, None, '{"data": "raw"}'),
            ("Store", "write", "Config_Op", "Pandas", "out.csv", None, '{"data": "raw"}', None),
        ],
        "table.db",
    )
    code, out, err = run_main(capsys, "validate", str(good), str(table))
    assert code == 0, out
    assert out == [f"{good}: ok: pipeline 'good', 3 steps", f"{table}: ok: pipeline 'table', 2 steps"]
    assert err == ""


def test_validate_rejects_with_one_line_per_problem(files, capsys) -> None:
    _sources(files)
    bad = bad_configs(files)
    good = files.json(good_steps(), "good.json")
    code, out, err = run_main(capsys, "validate", str(bad["json"]), str(bad["yaml"]), str(bad["db"]), str(good))
    assert code == 1
    problems = [m for m in map(LINE.match, out) if m]
    assert len(problems) == len(out) - 1, out  # every line but the good file's "ok" is a problem
    assert f"{good}: ok: pipeline 'good', 3 steps" in out
    by = {(Path(m["file"]).name, m["step"], m["field"]): m for m in problems}
    assert "use 'ingest'" in by[("bad.json", "read", "layer")]["msg"]
    assert "SQL names table 'nope'" in by[("bad.json", "filter", "value")]["msg"]
    assert "store step has an empty value" in by[("bad.json", "write", "value")]["msg"]
    assert by[("bad.json", "read", "layer")]["line"] == "4"
    yaml_line = next(m for m in problems if m["file"] == str(bad["yaml"]))
    assert yaml_line["line"] == "5" and yaml_line["msg"].startswith("invalid YAML")
    assert "transform step has no inputs" in by[("bad.db", "t", "inputs")]["msg"]
    assert "Traceback" not in "\n".join(out) + err


def test_validate_directory_project_and_all_rows(files, capsys) -> None:
    _sources(files)
    rows = [
        ("sales", "Ingest", "read", "Config_Op", "Pandas", "in.csv", None, None, '{"data": "raw"}', 1),
        ("sales", "Store", "write", "Config_Op", "Pandas", "", None, '{"data": "raw"}', None, 0),
        ("hr", "Ingest", "read", "Config_Op", "Pandas", "people.csv", None, None, '{"data": "people"}', 1),
    ]
    db = files.sqlite(rows, "projects.db", columns=["project", *ODIBI_COLUMNS, "enabled"])
    code, out, _ = run_main(capsys, "validate", str(db), "--project", "sales")
    assert (code, out) == (0, [f"{db}: ok: pipeline 'sales', 1 steps"])
    code, out, _ = run_main(capsys, "validate", str(db), "--project", "sales", "--all-rows")
    assert code == 1
    assert out == [f"{db}:2: step 'write': value: store step has an empty value (expected a target path or table)"]
    code, out, _ = run_main(capsys, "validate", str(files.root))
    assert code == 0 and len(out) == 2


def test_validate_missing_path_and_empty_directory(files, capsys, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = run_main(capsys, "validate", str(tmp_path / "nope.yaml"), str(tmp_path / "empty"))
    assert code == 1
    assert out == [
        f"{tmp_path / 'nope.yaml'}: Config source not found",
        f"{tmp_path / 'empty'}: no config files found",
    ]
    assert "Traceback" not in err


def test_validate_lines_stay_single_lines(files, capsys) -> None:
    path = files.json([ingest("two\nlines", layer="in\ngest")], "nl.json")
    code, out, _ = run_main(capsys, "validate", str(path))
    assert code == 1
    assert all(LINE.match(line) for line in out), out
    assert any("two\\nlines" in line for line in out)


def test_validate_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_console_script_exit_codes_and_no_traceback(files) -> None:
    _sources(files)
    assert CONSOLE_SCRIPT.exists(), CONSOLE_SCRIPT
    bad = bad_configs(files)
    deep = files.text("[" * 50_000 + "]" * 50_000, "deep.json")
    weird = files.json({"steps": [{"layer": {"nested": [None, {"x": []}]}, "name": ["a"], "inputs": 3}]}, "weird.json")
    good = files.json(good_steps(), "good.json")
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "validate", *map(str, bad.values()), str(deep), str(weird), str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert {Path(m["file"]).name for m in map(LINE.match, lines) if m} == {
        "bad.json",
        "broken.yaml",
        "bad.db",
        "deep.json",
        "weird.json",
    }
    assert lines[-1] == f"{good}: ok: pipeline 'good', 3 steps"
    ok = subprocess.run([str(CONSOLE_SCRIPT), "validate", str(good)], capture_output=True, text=True, timeout=120)
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{good}: ok: pipeline 'good', 3 steps")
    schema = subprocess.run([str(CONSOLE_SCRIPT), "schema"], capture_output=True, text=True, timeout=120)
    assert schema.returncode == 0 and json.loads(schema.stdout)["type"] == "object"


# --- schema ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["schema"]) == 0
    return json.loads(buf.getvalue())


def test_schema_is_a_valid_json_schema(schema: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["steps"]
    step = schema["$defs"]["Step"]
    assert step["required"] == ["name"]
    assert step["additionalProperties"] is False
    assert "line" not in step["properties"]  # set by the loader, not by users


GOOD_DOCUMENT = """
pipeline: sales_medallion
engine: pandas
owners: ["team:data-eng", "ana@example.com"]
partitions: {type: daily, start: "2024-01-01"}
schedule: {cron: "0 2 * * *", timezone: UTC}
sensors:
  - {type: file_watch, path: data/incoming, pattern: "*.csv", step: ingest_sales}
  - {type: incremental, step: ingest_sales, source: "sqlite:///w.db", table: sales, watermark_column: ts}
hooks:
  - {event: pipeline_complete, function: json.dumps}
retry: {max_retries: 2, delay_seconds: 5}
steps:
  - layer: ingest
    name: ingest_sales
    value: "data/raw/{{ partition_key }}/*.csv"
    outputs: {data: bronze_sales}
  - layer: transform
    name: clean_sales
    type: sql
    value: SELECT * FROM bronze WHERE amount > 0
    inputs: {bronze: bronze_sales}
    outputs: {data: silver_sales}
    checks: [{not_null: [sale_id]}, {unique: [sale_id]}, {row_count: {min: 1}}]
  - {layer: store, name: save_silver, value: out/silver_sales.parquet, inputs: {data: silver_sales}}
"""


def test_schema_accepts_the_design_document(schema: dict, files) -> None:
    document = yaml.safe_load(GOOD_DOCUMENT)
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    # ... and the same document validates for real.
    assert main(["validate", str(files.yaml(document, "design.yaml"))]) == 0
    # ODIBI's nulls are valid in the schema as they are in the loader.
    odibi = {"steps": [{"layer": "ingest", "name": "r", "value": "x.csv", "params": None, "inputs": None,
                        "outputs": {"data": "raw"}, "metadata": None, "checks": None}]}  # fmt: skip
    jsonschema.validate(odibi, schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("stepz",), []),  # unknown pipeline key
        (("steps", 0, "descr"), "x"),  # unknown step key
        (("steps", 0, "inputs"), ["bronze_sales"]),  # wrong shape
        (("steps", 1, "checks", 0), {"not_null": "sale_id"}),
        (("schedule", "cron"), 5),
        (("partitions", "type"), "yearly"),
        (("sensors", 0, "type"), "webhook"),
        (("retry", "max_retries"), -1),
        (("steps",), "all of them"),
    ],
)
def test_schema_rejects_bad_documents(schema: dict, path: tuple, value: object) -> None:
    document = yaml.safe_load(GOOD_DOCUMENT)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    without_steps = yaml.safe_load(GOOD_DOCUMENT)
    del without_steps["steps"]
    with pytest.raises(jsonschema.ValidationError, match="'steps' is a required property"):
        jsonschema.validate(without_steps, schema, cls=jsonschema.Draft202012Validator)
