"""The real ``dg`` CLI on a project using ``OdibiPipelineComponent``.

``create-dagster project`` (how ``dg`` projects are usually made) needs ``uv`` and the network, so
the project is laid out by hand as it would make it: a ``pyproject.toml`` with ``[tool.dg]``
settings, ``src/<module>/definitions.py`` loading the ``defs`` folder. Then, with the real ``dg``:
``list components``, ``scaffold defs`` (a starter pipeline, and one given ``translation`` and
``post_processing``), ``check yaml`` (which also catches a bad attribute), ``list defs --json``,
and ``launch`` of both pipelines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DG = str(Path(sys.executable).parent / "dg")
MODULE = "odibi_project"
REGISTERED = "odibi_dagster.components.OdibiPipelineComponent"

PYPROJECT = f"""\
[project]
name = "{MODULE}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["dagster", "odibi-dagster"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{MODULE}"
"""

DEFINITIONS_PY = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def _project(root: Path) -> Path:
    package = root / "src" / MODULE
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS_PY)
    return package / "defs"


def _dg(root: Path, *args: str, home: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ODIBI_BASE_DIR", "VIRTUAL_ENV")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(root / "src")]),
        DAGSTER_HOME=str(home),
        NO_COLOR="1",
        COLUMNS="200",
    )
    proc = subprocess.run([DG, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, f"dg {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _defs_yaml(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "defs.yaml").read_text())


def test_dg_scaffolds_checks_lists_and_launches_odibi_pipelines(tmp_path: Path) -> None:
    root = tmp_path / "project"
    defs = _project(root)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    listed = json.loads(_dg(root, "list", "components", "--json", home=home).stdout)
    assert REGISTERED in {item["key"] for item in listed["items"]}

    # The starter pipeline, by the name users write (the package exports the component).
    _dg(root, "scaffold", "defs", "odibi_dagster.OdibiPipelineComponent", "sales", home=home)
    assert {p.name for p in (defs / "sales").iterdir()} == {"defs.yaml", "pipeline.yaml", "data"}
    assert _defs_yaml(defs / "sales")["type"] == "odibi_dagster.OdibiPipelineComponent"

    # A second one, by its registered name, given translation and post_processing.
    _dg(root, "scaffold", "defs", REGISTERED, "marts", home=home)
    doc = _defs_yaml(defs / "marts")
    assert doc["type"] == REGISTERED
    doc["attributes"]["key_prefix"] = ["warehouse"]
    doc["attributes"]["translation"] = {
        "group_name": "odibi_{{ pipeline.name }}",
        "tags": {"layer": "{{ step.layer }}"},
        "description": "{{ step.name }}: {{ spec.description }}",
    }
    doc["post_processing"] = {"assets": [{"target": "*", "attributes": {"owners": ["team:marts"]}}]}
    good = yaml.safe_dump(doc, sort_keys=False)

    # A typo in an attribute: dg check yaml names the file, the line and the attribute. (dg 1.13
    # checks one defs.yaml per type name, so each folder here uses its own name.)
    (defs / "marts" / "defs.yaml").write_text(good.replace("  paths:", "  pathz:"))
    bad = _dg(root, "check", "yaml", home=home, ok=False)
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "marts/defs.yaml:3" in output and "'pathz' was unexpected" in output, output[-2000:]
    (defs / "marts" / "defs.yaml").write_text(good)
    checked = _dg(root, "check", "yaml", home=home)
    assert "All component YAML validated successfully" in checked.stdout + checked.stderr

    listing = json.loads(_dg(root, "list", "defs", "--json", home=home).stdout)
    assets = {a["asset_key"]: a for a in listing["assets"]}
    assert set(assets) == {
        *(f"sales/{k}" for k in ("orders", "revenue_by_region", "save_revenue")),
        *(f"warehouse/marts/{k}" for k in ("orders", "revenue_by_region", "save_revenue")),
    }
    sales_orders, marts_orders = assets["sales/orders"], assets["warehouse/marts/orders"]
    assert sales_orders["group_name"] == "sales" and marts_orders["group_name"] == "odibi_marts"
    assert sales_orders["source"].endswith("sales/pipeline.yaml:6")  # the step's line in its config
    assert {"key": "layer", "value": "ingest"} in marts_orders["tags"]
    assert marts_orders["owners"] == [{"team": "marts"}] and sales_orders["owners"] == []  # post_processing
    assert marts_orders["description"] == "read_orders: Reads `data/orders.csv`"
    assert assets["warehouse/marts/revenue_by_region"]["dependency_keys"] == ["warehouse/marts/orders"]
    assert {j["name"] for j in listing["jobs"]} == {"sales", "marts"}
    assert len(listing["asset_checks"]) == 6

    _dg(root, "launch", "--job", "sales", home=home)
    _dg(root, "launch", "--assets", "group:odibi_marts", home=home)
    for name in ("sales", "marts"):
        revenue = pd.read_csv(defs / name / "output" / "revenue_by_region.csv")
        assert list(revenue["region"]) == ["east", "north", "south", "west"] and revenue["orders"].sum() == 20
