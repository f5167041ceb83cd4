"""ODIBI's walkthrough layout (a bare JSON list under ``odibi_core/examples/configs`` reading
``odibi_core/examples/data/sample.csv``) loaded by a real ``dagster dev`` whose working
directory is the workspace's, and run from the UI: the paths resolve against ODIBI's project
root, not against the webserver's working directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from support import dagster_dev, graphql

pytestmark = [pytest.mark.slow]

LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


def test_odibi_layout_runs_from_the_ui_with_the_workspace_elsewhere(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    data = repo / "odibi_core" / "examples" / "data"
    data.mkdir(parents=True)
    (data / "sample.csv").write_text("id,value\n1,150\n2,50\n3,300\n")
    configs = repo / "odibi_core" / "examples" / "configs"
    configs.mkdir()
    (configs / "simple_pipeline.json").write_text(
        json.dumps(
            [
                {
                    "layer": "ingest",
                    "name": "read_sample_csv",
                    "value": "odibi_core/examples/data/sample.csv",
                    "outputs": {"data": "raw_data"},
                },
                {
                    "layer": "transform",
                    "name": "filter_high_value",
                    "type": "sql",
                    "value": "SELECT * FROM data WHERE value > 100 ORDER BY id",
                    "inputs": {"data": "raw_data"},
                    "outputs": {"data": "filtered_data"},
                },
                {
                    "layer": "store",
                    "name": "write_parquet",
                    "value": "odibi_core/examples/output/filtered.parquet",
                    "inputs": {"data": "filtered_data"},
                },
            ]
        )
    )
    workspace = tmp_path / "deploy"  # dagster dev's working directory: not the ODIBI repo root
    workspace.mkdir()
    (workspace / "defs.py").write_text(
        "from odibi_dagster import build_definitions\n\n"
        f"defs = build_definitions({str(configs / 'simple_pipeline.json')!r})\n"
    )
    (workspace / "workspace.yaml").write_text(
        "load_from:\n  - python_file: {relative_path: defs.py, location_name: odibi_layout}\n"
    )
    with dagster_dev(workspace, tmp_path / "home") as base:
        params = {
            "selector": {
                "repositoryLocationName": "odibi_layout",
                "repositoryName": "__repository__",
                "jobName": "simple_pipeline",
            },
            "runConfigData": {},
        }
        launched = graphql(base, LAUNCH, {"p": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + 180
        while (status := graphql(base, STATUS, {"id": run_id})["runOrError"]["status"]) not in (
            "SUCCESS",
            "FAILURE",
            "CANCELED",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert status == "SUCCESS", (tmp_path / "home" / "dagster_dev.log").read_text()[-3000:]
    out = pd.read_parquet(repo / "odibi_core" / "examples" / "output" / "filtered.parquet")
    assert out["id"].tolist() == [1, 3]
    assert not (workspace / "odibi_core").exists()
