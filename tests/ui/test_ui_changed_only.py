"""What the UI's staleness shows and "Materialize unsynced" selects is what ``odibi-dagster run
--changed-only`` runs, through a real ``dagster dev`` (webserver and daemon) over the CLI's
instance:

* after a source changes and a step's SQL is edited, "Observe sources" (launched as the UI does)
  records the new source version; the asset nodes' ``staleStatus`` / ``staleCauses`` then show
  the ingest stale by its source's data version and the edited step stale by its code version,
  exactly the assets the CLI finds stale;
* "Materialize unsynced" launches those assets (the selection the button builds); Dagster marks
  stale only assets whose own inputs changed, so what follows them is unsynced next, again
  exactly what the CLI finds; one ``--changed-only`` run finishes the work, and the UI then
  shows nothing unsynced, with each asset's data version the fingerprint of its dataset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from support import BRANCHES as STEPS
from support import dagster_dev, graphql

pytestmark = [pytest.mark.slow]

LOCATION = "changed_only"
REPO = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
ODIBI = str(Path(sys.executable).parent / "odibi-dagster")

NODES = """query($g: AssetGroupSelector!) { assetNodes(group: $g) { assetKey { path } isMaterializable
  isObservable opVersion dataVersion staleStatus staleCauses { key { path } category reason dependency { path } } } }"""
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message } } }"""


def _write(root: Path, a_scale: int, clean_b: str) -> Path:
    data = root / "pipelines" / "data"  # relative paths resolve against the config's folder
    data.mkdir(parents=True, exist_ok=True)
    (data / "a.csv").write_text("id,value\n" + "".join(f"{i},{i * a_scale}\n" for i in range(1, 6)))
    if not (data / "b.csv").exists():  # written once: b's source never changes
        (data / "b.csv").write_text("id,value\n" + "".join(f"{i},{i * 7}\n" for i in range(1, 6)))
    steps = [dict(s) for s in STEPS]
    steps[3]["value"] = clean_b
    config = root / "pipelines" / "branches.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(yaml.safe_dump({"pipeline": "branches", "steps": steps}, sort_keys=False))
    return config


def _cli(root: Path, home: Path, config: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ODIBI_BASE_DIR"} | {"DAGSTER_HOME": str(home)}
    proc = subprocess.run(
        [ODIBI, "run", str(config), "--changed-only"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _nodes(base: str) -> dict[str, dict[str, Any]]:
    nodes = graphql(base, NODES, {"g": {**REPO, "groupName": "branches"}})["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}


def _unsynced(nodes: dict[str, dict[str, Any]]) -> set[str]:
    """What "Materialize unsynced" selects (the UI's CalculateUnsyncedDialog, unpartitioned assets)."""
    return {k for k, n in nodes.items() if n["isMaterializable"] and n["staleStatus"] in ("STALE", "MISSING")}


def _launch_and_wait(base: str, keys: list[str]) -> None:
    selector = {**REPO, "jobName": "__ASSET_JOB", "assetSelection": [{"path": k.split("/")} for k in keys]}
    result = graphql(base, LAUNCH, {"p": {"selector": selector, "runConfigData": {}}})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        run = graphql(base, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})
        status = run["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            assert status == "SUCCESS"
            return
        time.sleep(0.5)
    pytest.fail(f"run {run_id} did not finish")


def _cli_stale(config: Path, home: Path) -> set[str]:
    """The assets ``--changed-only`` finds stale or missing (its own planning, on the same instance)."""
    from odibi_dagster.translate.changed_only import changed_runs
    from odibi_dagster.translate.definitions import build_plans, definitions_from_plans, load_configs
    from odibi_dagster.translate.translator import OdibiTranslator

    (plan,) = build_plans(load_configs([config]), OdibiTranslator(), (), None)
    defs = definitions_from_plans([plan], OdibiTranslator(), ())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (change,) = changed_runs(defs, defs.resolve_job_def("branches"), plan, instance, [{}], None)
    return {k.to_user_string() for k in change.stale}


def test_ui_staleness_and_materialize_unsynced_match_changed_only(tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    config = _write(root, 10, STEPS[3]["value"])
    (root / "definitions.py").write_text(
        "from odibi_dagster import build_definitions\n\ndefs = build_definitions('pipelines/')\n"
    )
    (root / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: definitions.py\n      location_name: {LOCATION}\n"
    )
    home.mkdir()
    shutil.copyfile(Path(__file__).parents[2] / "scripts" / "dagster.yaml", home / "dagster.yaml")  # the quick start's
    first = _cli(root, home, config)
    assert "6 step(s) stale or missing" in first

    # a source changes and a step's SQL is edited
    _write(root, 11, "SELECT id, value * 2 AS value FROM b WHERE value > 0")
    with dagster_dev(root, home) as base:
        nodes = _nodes(base)
        assert _unsynced(nodes) == {"branches/clean_b"}  # the code version is known at once
        sources = {k for k, n in nodes.items() if n["isObservable"]}
        assert sources == {"branches/source/read_a", "branches/source/read_b"}

        # "Observe sources": the source's new data version marks its ingest stale
        _launch_and_wait(base, sorted(sources))
        nodes = _nodes(base)
        unsynced = _unsynced(nodes)
        assert unsynced == {"branches/raw_a", "branches/clean_b"} == _cli_stale(config, home)
        # (the UI shows root causes: here the source itself, "has a new data version")
        (cause,) = nodes["branches/raw_a"]["staleCauses"]
        assert cause["category"] == "DATA" and cause["reason"] == "has a new data version"
        assert cause["key"]["path"] == ["branches", "source", "read_a"]
        (cause,) = nodes["branches/clean_b"]["staleCauses"]
        assert cause["category"] == "CODE" and cause["reason"] == "has a new code version"

        # "Materialize unsynced" runs that selection; what follows it is unsynced next
        _launch_and_wait(base, sorted(unsynced))
        nodes = _nodes(base)
        assert _unsynced(nodes) == {"branches/clean_a", "branches/joined"} == _cli_stale(config, home)
        reasons = {(c["reason"], "/".join(c["key"]["path"])) for c in nodes["branches/joined"]["staleCauses"]}
        assert reasons == {("has a new data version", "branches/clean_b")}

        # one --changed-only run does the rest, and leaves nothing unsynced
        out = _cli(root, home, config)
        assert "2 step(s) stale or missing, 1 downstream of them" in out
        nodes = _nodes(base)
        assert _unsynced(nodes) == set()
        assert {n["staleStatus"] for n in nodes.values() if n["isMaterializable"]} == {"FRESH"}
        parquet = root / "pipelines/.odibi/datasets/branches/joined/data.parquet"
        assert nodes["branches/joined"]["dataVersion"] == hashlib.sha256(parquet.read_bytes()).hexdigest()[:32]
        assert nodes["branches/joined"]["opVersion"]  # the step's code version
