"""``odibi-dagster run`` as a user runs it (subprocesses), ODIBI's own config forms running
unchanged, and ``dagster definitions validate`` on the example code location."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from odibi_testlib import (
    DAGSTER_CLI,
    HIGH_VALUE_IDS,
    ODIBI_SIMPLE_STEPS,
    REPO,
    Project,
    cli_env,
    persistent_instance,
    run_cli,
)

from odibi_dagster import build_definitions

PROGRESS = re.compile(r"^\s+ok\s+(?P<step>\S+)\s+(?:(?P<rows>\d+) rows)?\s+(?P<ms>\d+) ms$", re.M)
RUN_ID = re.compile(r"\(run ([0-9a-f-]{36})\)")


def progress(stdout: str) -> dict[str, int | None]:
    """Step -> rows from the CLI's progress lines (one per finished step)."""
    out: dict[str, int | None] = {}
    for m in PROGRESS.finditer(stdout):
        assert m.group("step") not in out, f"two lines for {m.group('step')}"
        out[m.group("step")] = int(m.group("rows")) if m.group("rows") else None
    return out


def odibi_expected(sample_csv: Path) -> pd.DataFrame:
    """What ODIBI CORE's pandas engine produces for the walkthrough's simple pipeline:
    ``pd.read_csv`` -> DuckDB SQL over the registered frame -> ``to_parquet``."""
    df = pd.read_csv(sample_csv)
    con = duckdb.connect()
    con.register("data", df)
    return con.execute("SELECT * FROM data WHERE value > 100 ORDER BY id").df()


def assert_same_as_odibi(ours: Path, sample_csv: Path) -> None:
    expected = odibi_expected(sample_csv)
    got = pd.read_parquet(ours)
    assert len(got) == 6
    assert got["id"].tolist() == HIGH_VALUE_IDS
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got.astype(str), expected.astype(str))
    for col in ("id", "value"):
        assert str(got[col].dtype) == str(expected[col].dtype) == "int64"


# ----------------------------------------------------------------------------- odibi-dagster run


def test_run_in_process_prints_a_line_per_step_and_select_runs_only_chosen_steps(project: Project) -> None:
    project.sample_csv()
    config = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)

    full = run_cli("run", str(config), cwd=project.root)
    assert full.returncode == 0, full.stderr
    assert progress(full.stdout) == {
        "read_sample_csv": 10,
        "filter_high_value": 6,
        "write_filtered_parquet": 6,
    }
    assert "pipeline 'simple_pipeline' succeeded" in full.stdout
    assert RUN_ID.search(full.stdout)
    assert_same_as_odibi(project.path("output/filtered.parquet"), project.path("data/sample.csv"))
    project.path("output/filtered.parquet").unlink()

    only_store = run_cli("run", str(config), "--select", "write_filtered_parquet", cwd=project.root)
    assert only_store.returncode == 0, only_store.stderr
    assert progress(only_store.stdout) == {"write_filtered_parquet": 6}
    assert_same_as_odibi(project.path("output/filtered.parquet"), project.path("data/sample.csv"))

    unknown = run_cli("run", str(config), "--select", "no_such_step", cwd=project.root)
    assert unknown.returncode == 2
    assert "no_such_step" in unknown.stderr


FAILING = """
def explode(data):
    raise ValueError("kaboom: bad batch")
"""


def test_run_failure_exits_non_zero_naming_the_step_and_is_recorded_in_dagster_home(
    project: Project, tmp_path: Path
) -> None:
    project.sample_csv()
    fn = project.module(FAILING)
    config = project.pipeline(
        "breaks",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "explode",
                "type": "function",
                "value": f"{fn}.explode",
                "inputs": {"data": "raw"},
                "outputs": {"data": "exploded"},
            },
            {
                "layer": "store",
                "name": "save_exploded",
                "value": "out/exploded.csv",
                "inputs": {"data": "exploded"},
            },
            {"layer": "store", "name": "save_raw", "value": "out/raw.csv", "inputs": {"data": "raw"}},
        ],
    )
    home = tmp_path / "dagster_home"
    persistent_instance(home).dispose()
    proc = run_cli("run", str(config), cwd=project.root, env=cli_env(DAGSTER_HOME=str(home)))
    assert proc.returncode == 1
    assert "FAILED at step 'explode'" in proc.stderr
    assert "kaboom: bad batch" in proc.stderr
    assert re.search(r"FAIL\s+explode\s+ValueError: kaboom", proc.stdout)
    assert re.search(r"skip\s+save_exploded", proc.stdout)
    assert progress(proc.stdout) == {"read": 10, "save_raw": 10}
    # downstream of the failure: not run; upstream: kept
    assert not project.path("out/exploded.csv").exists()
    assert len(pd.read_csv(project.path("out/raw.csv"))) == 10
    assert (project.datasets_dir("breaks") / "raw" / "data.parquet").exists()

    match = RUN_ID.search(proc.stderr)
    assert match
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(match.group(1))
        assert run is not None
        assert run.job_name == "breaks"
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert instance.get_latest_materialization_event(dg.AssetKey(["breaks", "raw"])) is not None
        assert instance.get_latest_materialization_event(dg.AssetKey(["breaks", "exploded"])) is None


def test_run_with_an_invalid_config_lists_problems_and_runs_nothing(project: Project) -> None:
    config = project.odibi_json(
        "bad.json",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {"layer": "store", "name": "save", "value": "out.csv", "inputs": {"data": "nothing"}},
        ],
    )
    proc = run_cli("run", str(config), cwd=project.root)
    assert proc.returncode == 1
    assert "step 'save': inputs.data:" in proc.stdout + proc.stderr
    assert not (project.root / ".odibi").exists()


def test_run_multiprocess_with_dagster_home_records_the_run(project: Project, tmp_path: Path) -> None:
    project.sample_csv()
    config = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    home = tmp_path / "dagster_home"
    persistent_instance(home).dispose()
    proc = run_cli(
        "run",
        str(config),
        "--executor",
        "multiprocess",
        cwd=project.root,
        env=cli_env(DAGSTER_HOME=str(home)),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert progress(proc.stdout) == {
        "read_sample_csv": 10,
        "filter_high_value": 6,
        "write_filtered_parquet": 6,
    }
    assert_same_as_odibi(project.path("output/filtered.parquet"), project.path("data/sample.csv"))
    match = RUN_ID.search(proc.stdout)
    assert match
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert [r.run_id for r in runs] == [match.group(1)]
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].job_name == "simple_pipeline"
        records = instance.get_records_for_run(runs[0].run_id).records
        workers = {
            r.event_log_entry.step_key
            for r in records
            if r.event_log_entry.dagster_event is not None
            and r.event_log_entry.dagster_event.event_type_value == "STEP_WORKER_STARTED"
        }
        assert len(workers) == 3  # one subprocess per step
        mat = instance.get_latest_materialization_event(dg.AssetKey(["simple_pipeline", "filtered_data"]))
        assert mat is not None and mat.asset_materialization is not None
        assert mat.asset_materialization.metadata["dagster/row_count"].value == 6


# ----------------------------------------------------------------------------- ODIBI's config forms


TABLE_COLUMNS = [
    "Layer",
    "StepName",
    "StepType",
    "Engine",
    "Value",
    "Params",
    "Inputs",
    "Outputs",
    "project",
    "enabled",
]


def odibi_rows(steps: list[dict[str, object]]) -> list[list[object]]:
    """ODIBI's transformation_config rows: capitalised enums, JSON strings in JSON columns."""
    import json

    def cap(text: str) -> str:
        return {"sql": "SQL", "config_op": "Config_Op", "pandas": "Pandas"}.get(text, text.capitalize())

    rows: list[list[object]] = []
    for s in steps:
        rows.append(
            [
                cap(str(s["layer"])),
                s["name"],
                cap(str(s["type"])),
                cap(str(s["engine"])),
                s["value"],
                json.dumps(s.get("params", {})),
                json.dumps(s.get("inputs", {})),
                json.dumps(s.get("outputs", {})),
                "walkthrough",
                1,
            ]
        )
    # a disabled row of another step: ODIBI skips rows with enabled = 0
    rows.append(
        [
            "Store",
            "disabled_copy",
            "Config_Op",
            "Pandas",
            "output/never.csv",
            "{}",
            '{"data": "filtered_data"}',
            "{}",
            "walkthrough",
            0,
        ]
    )
    return rows


@pytest.mark.parametrize("form", ["json", "sqlite", "csv"])
def test_odibi_config_forms_run_unchanged_and_write_what_odibi_writes(project: Project, form: str) -> None:
    project.sample_csv()
    if form == "json":
        config = project.odibi_json("walkthrough.json", ODIBI_SIMPLE_STEPS)
    elif form == "sqlite":
        config = project.path("walkthrough.db")
        conn = sqlite3.connect(config)
        conn.execute(f"CREATE TABLE transformation_config ({', '.join(TABLE_COLUMNS)})")
        conn.executemany(
            f"INSERT INTO transformation_config VALUES ({', '.join('?' * len(TABLE_COLUMNS))})",
            odibi_rows(ODIBI_SIMPLE_STEPS),
        )
        conn.commit()
        conn.close()
    else:
        config = project.path("walkthrough.csv")
        pd.DataFrame(odibi_rows(ODIBI_SIMPLE_STEPS), columns=TABLE_COLUMNS).to_csv(config, index=False)
    defs = build_definitions(config)
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == {
        "walkthrough/raw_data",
        "walkthrough/filtered_data",
        "walkthrough/write_filtered_parquet",
        "walkthrough/source/read_sample_csv",  # the ingest's source files (an observable source asset)
    }
    result = defs.resolve_job_def("walkthrough").execute_in_process(raise_on_error=False)
    assert result.success
    rows = {
        m.asset_key.path[-1]: m.materialization.metadata["dagster/row_count"].value
        for m in result.get_asset_materialization_events()
    }
    assert rows == {"raw_data": 10, "filtered_data": 6, "write_filtered_parquet": 6}
    assert_same_as_odibi(project.path("output/filtered.parquet"), project.path("data/sample.csv"))
    assert not project.path("output/never.csv").exists()


# ----------------------------------------------------------------------------- example code location


def test_dagster_definitions_validate_the_example_workspace() -> None:
    proc = subprocess.run(
        [DAGSTER_CLI, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "odibi_examples" in proc.stdout + proc.stderr
