"""ODIBI CORE's own config layouts and behaviours, on real files, through the CLI a user runs:
its project-relative paths, pandas' CSV null tokens, single-input functions, several projects
in one config table, NULL StepType, pandas writer options; and validation that catches a
missing source or a misspelled column before any run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from odibi_dagster import ConfigValidationError, build_definitions, load_pipelines
from odibi_dagster.engines.preflight import check_data

CLI = str(Path(sys.executable).parent / "odibi-dagster")
ODIBI_COLUMNS = ["Layer", "StepName", "StepType", "Engine", "Value", "Params", "Inputs", "Outputs"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def _odibi_repo(root: Path) -> Path:
    """ODIBI's Phase 3 walkthrough layout: the config under examples/configs, paths from the repo root."""
    data = root / "odibi_core" / "examples" / "data"
    data.mkdir(parents=True)
    (data / "sample.csv").write_text("id,category,value\n1,A,150\n2,B,50\n3,A,300\n")
    config = root / "odibi_core" / "examples" / "configs" / "simple_pipeline.json"
    config.parent.mkdir(parents=True)
    config.write_text(
        json.dumps(
            [
                {
                    "layer": "ingest",
                    "name": "read_data",
                    "type": "config_op",
                    "engine": "pandas",
                    "value": "odibi_core/examples/data/sample.csv",
                    "outputs": {"data": "raw_data"},
                },
                {
                    "layer": "transform",
                    "name": "filter_high",
                    "type": "sql",
                    "engine": "pandas",
                    "value": "SELECT * FROM data WHERE value > 100",
                    "inputs": {"data": "raw_data"},
                    "outputs": {"data": "high_value"},
                },
                {
                    "layer": "store",
                    "name": "save",
                    "type": "config_op",
                    "engine": "pandas",
                    "value": "odibi_core/examples/output/high_value.csv",
                    "inputs": {"data": "high_value"},
                },
            ]
        )
    )
    return config


def test_odibi_walkthrough_layout_runs_unchanged_from_any_working_directory(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    config = _odibi_repo(repo)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    checked = _cli("validate", str(config), cwd=elsewhere)
    assert checked.returncode == 0, checked.stdout
    assert f"relative paths resolve against {repo} (ODIBI project root)" in checked.stdout
    ran = _cli("run", str(config), cwd=elsewhere)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = pd.read_csv(repo / "odibi_core" / "examples" / "output" / "high_value.csv")
    assert out["id"].tolist() == [1, 3]


def test_the_project_root_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As under `dagster dev`, where the working directory is the workspace's.
    repo = tmp_path / "repo"
    config = _odibi_repo(repo)
    monkeypatch.chdir(tmp_path)
    [pipeline] = load_pipelines(config)
    assert pipeline.data_root == repo
    defs = build_definitions(config)
    assert defs.resolve_job_def("simple_pipeline").execute_in_process().success
    assert (repo / "odibi_core" / "examples" / "output" / "high_value.csv").exists()


def test_an_ambiguous_project_root_is_reported_and_documents_keep_their_folder(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    config = _odibi_repo(repo)
    # The same relative source under the configs folder too: the nearest wins, validate says so.
    copy = config.parent / "odibi_core" / "examples" / "data"
    copy.mkdir(parents=True)
    (copy / "sample.csv").write_text("id,category,value\n9,Z,999\n")
    checked = _cli("validate", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert f"resolve against {config.parent} (ODIBI project root); {repo} holds the same sources" in checked.stdout
    # A pipeline document resolves against its own folder, whatever is above it.
    doc = config.parent / "doc.yaml"
    doc.write_text(
        yaml.safe_dump(
            {
                "pipeline": "doc",
                "steps": [
                    {
                        "layer": "ingest",
                        "name": "read",
                        "value": "odibi_core/examples/data/sample.csv",
                        "outputs": {"data": "raw"},
                    }
                ],
            }
        )
    )
    [pipeline] = load_pipelines(doc)
    assert pipeline.data_root == config.parent


def test_csv_null_tokens_are_nulls_as_in_odibis_pandas_engine(tmp_path: Path) -> None:
    tokens = ["N/A", "NA", "null", "NULL", "NaN", "n/a", "nan", "-NaN", "#N/A", "<NA>", "None", ""]
    lines = ["id,amount,label"] + [f"{i},{t},{t}" for i, t in enumerate(tokens)] + ["99,7,x"]
    (tmp_path / "dirty.csv").write_text("\n".join(lines) + "\n")
    expected = pd.read_csv(tmp_path / "dirty.csv")  # what ODIBI's pandas engine reads
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": "nulls",
                "steps": [
                    {"layer": "ingest", "name": "read", "value": "dirty.csv", "outputs": {"data": "raw"}},
                    {
                        "layer": "ingest",
                        "name": "read_raw",
                        "value": "dirty.csv",
                        "params": {"keep_default_na": False},
                        "outputs": {"data": "raw_text"},
                    },
                    {
                        "layer": "transform",
                        "name": "count",
                        "type": "sql",
                        "inputs": {"d": "raw", "t": "raw_text"},
                        "value": "SELECT (SELECT COUNT(amount) FROM d) AS amounts, "
                        "(SELECT COUNT(label) FROM d) AS labels, (SELECT COUNT(label) FROM t) AS raw_labels",
                        "outputs": {"data": "counted"},
                    },
                    {"layer": "store", "name": "save", "value": "counts.csv", "inputs": {"data": "counted"}},
                ],
            }
        )
    )
    ran = _cli("run", str(config), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    counts = pd.read_csv(tmp_path / "counts.csv").iloc[0].to_dict()
    assert counts["amounts"] == expected["amount"].count() == 1
    assert counts["labels"] == expected["label"].count() == 1
    assert counts["raw_labels"] == len(tokens)  # keep_default_na: false: only empty fields are null


def test_single_input_functions_as_in_odibis_docs(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,value\n1,150\n2,50\n")
    (tmp_path / "metrics.py").write_text(
        "def calculate_metrics(df):\n    return df.assign(double=df['value'] * 2)\n\n"
        "def join_two(left, right):\n    return left.merge(right, on='id')\n"
    )
    config = tmp_path / "p.json"
    config.write_text(
        json.dumps(
            [
                {"layer": "ingest", "name": "read", "value": "in.csv", "outputs": {"data": "raw_sales"}},
                {
                    "layer": "transform",
                    "name": "metrics",
                    "type": "function",
                    "value": "metrics.calculate_metrics",
                    "inputs": {"data": "raw_sales"},
                    "outputs": {"data": "with_metrics"},
                },
                {
                    "layer": "transform",
                    "name": "joined",
                    "type": "function",
                    "value": "metrics.join_two",
                    "inputs": {"left": "raw_sales", "right": "with_metrics"},
                    "outputs": {"data": "joined"},
                },
                {"layer": "store", "name": "save", "value": "out.csv", "inputs": {"data": "joined"}},
            ]
        )
    )
    ran = _cli("run", str(config), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert pd.read_csv(tmp_path / "out.csv")["double"].tolist() == [300, 100]
    # Several inputs go by name: a function that cannot take them is a validation error naming it.
    doc = json.loads(config.read_text())
    doc[2]["inputs"] = {"a": "raw_sales", "b": "with_metrics"}
    config.write_text(json.dumps(doc))
    with pytest.raises(ConfigValidationError) as err:
        load_pipelines(config)
    [problem] = err.value.problems
    assert (problem.step, problem.field) == ("joined", "inputs")
    assert "join_two(left, right) has no parameter 'a' for input 'a'" in problem.message


def _sqlite_config(path: Path, rows: list[tuple]) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE transformation_config (Project, {', '.join(ODIBI_COLUMNS)}, enabled)")
        conn.executemany(f"INSERT INTO transformation_config VALUES ({', '.join('?' * 10)})", rows)
    return path


def test_a_config_table_with_two_projects_runs_both_and_null_steptype_is_sql(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,value\n1,150\n2,50\n")
    db = _sqlite_config(
        tmp_path / "config.db",
        [
            ("sales", "Ingest", "read", "Config_Op", "Pandas", "in.csv", None, None, '{"data": "raw"}', 1),
            # StepType NULL: a transform's SQL, as ODIBI's SQLite loader reads it.
            (
                "sales",
                "Transform",
                "high",
                None,
                "Pandas",
                "SELECT * FROM data WHERE value > 100",
                None,
                '{"data": "raw"}',
                '{"data": "high"}',
                1,
            ),
            ("sales", "Store", "save", "Config_Op", "Pandas", "sales_out.csv", None, '{"data": "high"}', None, 1),
            ("hr", "Ingest", "read", "Config_Op", "Pandas", "in.csv", None, None, '{"data": "raw"}', 1),
            ("hr", "Store", "save", "Config_Op", "Pandas", "hr_out.csv", None, '{"data": "raw"}', None, 1),
        ],
    )
    ran = _cli("run", str(db), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "odibi-dagster: 2 of 2 pipelines: 'hr' succeeded, 'sales' succeeded" in ran.stdout
    assert pd.read_csv(tmp_path / "sales_out.csv")["id"].tolist() == [1]
    assert len(pd.read_csv(tmp_path / "hr_out.csv")) == 2
    one = _cli("run", str(db), "--pipeline", "hr", cwd=tmp_path)
    assert one.returncode == 0 and "running pipeline 'hr'" in one.stdout and "'sales'" not in one.stdout


def test_pandas_json_writer_options_are_honoured_and_unknown_ones_rejected(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,name\n1,é\n2,b\n")
    config = tmp_path / "p.yaml"
    steps = [
        {"layer": "ingest", "name": "read", "value": "in.csv", "outputs": {"data": "raw"}},
        {
            "layer": "store",
            "name": "save",
            "value": "out.json",
            "inputs": {"data": "raw"},
            "params": {"orient": "records", "indent": 2},
        },
        {
            "layer": "store",
            "name": "save_csv",
            "value": "out.csv",
            "inputs": {"data": "raw"},
            "params": {"sep": ";", "index": False, "header": True},
        },
    ]
    config.write_text(yaml.safe_dump({"pipeline": "writers", "steps": steps}))
    ran = _cli("run", str(config), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    text = (tmp_path / "out.json").read_text()
    assert json.loads(text) == json.loads(pd.read_csv(tmp_path / "in.csv").to_json(orient="records"))
    assert text.startswith('[\n  {\n    "id": 1,')  # indented like pandas' indent=2
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "id;name"
    steps[1]["params"] = {"orient": "records", "indnt": 2}
    config.write_text(yaml.safe_dump({"pipeline": "writers", "steps": steps}))
    with pytest.raises(ConfigValidationError) as err:
        check_data(load_pipelines(config))
    [problem] = err.value.problems
    assert (problem.step, problem.field) == ("save", "params.indnt")
    assert "unknown json writer param 'indnt'; supported:" in problem.message and "indent" in problem.message


def _two_step(tmp_path: Path, source: str, sql: str, **partitions: object) -> Path:
    config = tmp_path / "p.yaml"
    doc: dict = {
        "pipeline": "checked",
        "steps": [
            {"layer": "ingest", "name": "read", "value": source, "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "pick",
                "type": "sql",
                "value": sql,
                "inputs": {"data": "raw"},
                "outputs": {"data": "picked"},
            },
            {
                "layer": "transform",
                "name": "again",
                "type": "sql",
                "value": "SELECT k, totl FROM p",
                "inputs": {"p": "picked"},
                "outputs": {"data": "again"},
            },
        ],
    }
    if partitions:
        doc["partitions"] = partitions
    config.write_text(yaml.safe_dump(doc))
    return config


def test_validate_reports_a_missing_source_and_misspelled_columns_before_any_run(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text("id,store,amount\n1,north,5\n")
    missing = _two_step(tmp_path, "salez.csv", "SELECT id AS k, amount AS total FROM data")
    checked = _cli("validate", str(missing), cwd=tmp_path)
    assert checked.returncode == 1
    assert f"step 'read': value: source not found: {tmp_path / 'salez.csv'}" in checked.stdout
    columns = _two_step(tmp_path, "sales.csv", "SELECT idd AS k, amount AS total FROM data")
    checked = _cli("validate", str(columns), cwd=tmp_path)
    assert checked.returncode == 1
    assert "step 'pick': value: column 'idd' not found in input 'data'; did you mean 'id'?" in checked.stdout
    # The output schema of one SQL step is the input schema of the next.
    fixed = _two_step(tmp_path, "sales.csv", "SELECT id AS k, amount AS total FROM data")
    checked = _cli("validate", str(fixed), cwd=tmp_path)
    assert "step 'again': value: column 'totl' not found in input 'p'; did you mean 'total'?" in checked.stdout
    ran = _cli("run", str(fixed), cwd=tmp_path)  # run checks too: nothing starts
    assert ran.returncode == 1 and "column 'totl' not found" in ran.stdout and "running pipeline" not in ran.stdout
    # Templated paths are checked with the first partition key; globs must match a file.
    (tmp_path / "days" / "2024-01-01").mkdir(parents=True)
    (tmp_path / "days" / "2024-01-01" / "part-1.csv").write_text("id,amount\n1,5\n")
    templated = _two_step(
        tmp_path,
        "days/{{ partition_key }}/part-*.csv",
        "SELECT id AS k, amount AS total FROM data",
        type="daily",
        start="2024-01-01",
        end="2024-01-03",
    )
    check_data(load_pipelines(_fix_again(templated)))
    glob_missing = _two_step(
        tmp_path,
        "days/{{ partition_key }}/sales-*.csv",
        "SELECT 1 AS k, 2 AS total",
        type="daily",
        start="2024-01-01",
        end="2024-01-03",
    )
    with pytest.raises(ConfigValidationError) as err:
        check_data(load_pipelines(_fix_again(glob_missing)))
    assert "no file matches" in str(err.value) and "rendered with the first partition key" in str(err.value)


def _fix_again(config: Path) -> Path:
    doc = yaml.safe_load(config.read_text())
    doc["steps"][2]["value"] = "SELECT k, total FROM p"
    config.write_text(yaml.safe_dump(doc))
    return config


def test_build_definitions_does_not_need_the_data(tmp_path: Path) -> None:
    # Code servers and CI load definitions without the data: only validate and run check sources.
    config = _two_step(tmp_path, "not_here_yet.csv", "SELECT id AS k, amount AS total FROM data")
    assert build_definitions(_fix_again(config)).resolve_job_def("checked") is not None


def test_validate_warns_where_a_config_relies_on_a_documented_difference(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text("id,ok,at\n1,true,2024-01-02 03:04:05\n")
    config = tmp_path / "p.json"
    config.write_text(
        json.dumps(
            [
                {
                    "layer": "ingest",
                    "name": "read",
                    "value": "events.csv",
                    "params": {"parse_dates": ["at"]},
                    "outputs": {"data": "raw"},
                },
                {"layer": "store", "name": "to_json", "value": "out.json", "inputs": {"data": "raw"}},
                {"layer": "store", "name": "to_csv", "value": "out.csv", "inputs": {"data": "raw"}},
                {
                    "layer": "store",
                    "name": "epoch_json",
                    "value": "epoch.json",
                    "inputs": {"data": "raw"},
                    "params": {"date_format": "epoch"},
                },
            ]
        )
    )
    checked = _cli("validate", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    lines = checked.stdout.splitlines()
    assert any("step 'to_json': value: warning: timestamps are written as ISO 8601" in line for line in lines)
    assert any("step 'to_csv': value: warning: booleans are written true/false" in line for line in lines)
    assert not any("epoch_json" in line for line in lines)
    # A CSV config table: rows with enabled = 0 are skipped, which ODIBI's CSV loader would run.
    table = tmp_path / "steps.csv"
    pd.DataFrame(
        [
            {
                "Layer": "Ingest",
                "StepName": "read",
                "StepType": "Config_Op",
                "Engine": "Pandas",
                "Value": "events.csv",
                "Outputs": '{"data": "raw"}',
                "enabled": 1,
            },
            {
                "Layer": "Store",
                "StepName": "old",
                "StepType": "Config_Op",
                "Engine": "Pandas",
                "Value": "old.parquet",
                "Inputs": '{"data": "raw"}',
                "enabled": 0,
            },
        ]
    ).to_csv(table, index=False)
    checked = _cli("validate", str(table), cwd=tmp_path)
    assert "pipeline: enabled: warning: 1 row(s) with enabled = 0 are skipped" in checked.stdout, checked.stdout


def test_a_sql_syntax_error_names_the_offending_token(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    config = tmp_path / "p.json"
    config.write_text(
        json.dumps(
            [
                {"layer": "ingest", "name": "read", "value": "in.csv", "outputs": {"data": "raw"}},
                {
                    "layer": "transform",
                    "name": "bad",
                    "type": "sql",
                    "value": "SELECT id, FROM data WHERE",
                    "inputs": {"data": "raw"},
                    "outputs": {"data": "x"},
                },
            ]
        )
    )
    with pytest.raises(ConfigValidationError) as err:
        load_pipelines(config)
    assert "SQL does not parse (duckdb dialect):" in str(err.value) and "at 'WHERE' (line 1, column 26)" in str(
        err.value
    )


def test_spark_sql_columns_are_checked_against_the_propagated_schema(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text("id,store,amount\n1,north,5\n")
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": "sparkcols",
                "engine": "spark",
                "steps": [
                    {"layer": "ingest", "name": "read", "value": "sales.csv", "outputs": {"data": "raw"}},
                    {
                        "layer": "transform",
                        "name": "pick",
                        "type": "sql",
                        "value": "SELECT store, amont FROM data",
                        "inputs": {"data": "raw"},
                        "outputs": {"data": "picked"},
                    },
                ],
            }
        )
    )
    load_pipelines(config)  # without the data checks: valid
    with pytest.raises(ConfigValidationError) as err:
        check_data(load_pipelines(config))
    [problem] = err.value.problems
    assert (problem.step, problem.field) == ("pick", "value")
    assert problem.message == "column 'amont' not found in the step's inputs; did you mean 'amount'?"


def test_remote_sources_are_checked_only_when_asked(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/odibi-compat/here.csv", b"id\n1\n")
    config = _two_step(tmp_path, "memory://odibi-compat/missing.csv", "SELECT id AS k, id AS total FROM data")
    _fix_again(config)
    check_data(load_pipelines(config))  # remote: not checked by default (listing a blob store costs)
    with pytest.raises(ConfigValidationError) as err:
        check_data(load_pipelines(config), remote=True)
    assert "source not found: memory://odibi-compat/missing.csv" in str(err.value)
    doc = yaml.safe_load(config.read_text())
    doc["steps"][0]["value"] = "memory://odibi-compat/here.csv"
    config.write_text(yaml.safe_dump(doc))
    check_data(load_pipelines(config), remote=True)


def test_run_on_a_folder_runs_every_pipeline_and_validate_lists_the_valid_ones(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n2\n")
    for name in ("first", "second"):
        (tmp_path / "nested" / name).mkdir(parents=True)
        (tmp_path / "nested" / name / f"{name}.yaml").write_text(
            yaml.safe_dump(
                {
                    "pipeline": name,
                    "steps": [
                        {"layer": "ingest", "name": "read", "value": "../../in.csv", "outputs": {"data": "raw"}},
                        {"layer": "store", "name": "save", "value": f"../../{name}.csv", "inputs": {"data": "raw"}},
                    ],
                }
            )
        )
    ran = _cli("run", str(tmp_path / "nested"), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 of 2 pipelines: 'first' succeeded, 'second' succeeded" in ran.stdout
    assert (tmp_path / "first.csv").exists() and (tmp_path / "second.csv").exists()
    (tmp_path / "nested" / "broken.json").write_text(
        '[{"layer": "ingest", "name": "x", "value": "nope.csv", "outputs": {"data": "r"}}]'
    )
    checked = _cli("validate", str(tmp_path / "nested"), cwd=tmp_path)
    assert checked.returncode == 1
    assert "broken.json:1: step 'x': value: source not found" in checked.stdout
    assert sum(": ok: pipeline" in line for line in checked.stdout.splitlines()) == 2
    assert not any(line.startswith("-:") or ": -:" in line for line in checked.stdout.splitlines())
