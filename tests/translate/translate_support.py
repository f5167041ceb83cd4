"""Shared helpers of the translate tests: write configs, data and function modules into a
temp project, build definitions and run them through Dagster (real DuckDB, real files)."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import yaml

from odibi_dagster import build_definitions

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ODIBI_CLI = str(VENV_BIN / "odibi-dagster")
DAGSTER_CLI = str(VENV_BIN / "dagster")

# ODIBI's walkthrough sample: 10 rows, 6 of them with value > 100.
SAMPLE_VALUES = [50, 150, 80, 200, 120, 90, 300, 101, 99, 180]
HIGH_VALUE_IDS = [i for i, v in enumerate(SAMPLE_VALUES, start=1) if v > 100]


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(1, 11),
            "name": [f"item_{i}" for i in range(1, 11)],
            "value": SAMPLE_VALUES,
            "category": [["A", "B", "C"][i % 3] for i in range(1, 11)],
        }
    )


def write_sample_csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "value", "category", "timestamp"])
        for i, v in enumerate(SAMPLE_VALUES, start=1):
            w.writerow([i, f"item_{i}", v, ["A", "B", "C"][i % 3], f"2024-01-{i:02d}T08:00:00"])
    return path


ODIBI_SIMPLE_STEPS: list[dict[str, Any]] = [
    {
        "layer": "ingest",
        "name": "read_sample_csv",
        "type": "config_op",
        "engine": "pandas",
        "value": "data/sample.csv",
        "outputs": {"data": "raw_data"},
    },
    {
        "layer": "transform",
        "name": "filter_high_value",
        "type": "sql",
        "engine": "pandas",
        "value": "SELECT * FROM data WHERE value > 100 ORDER BY id",
        "inputs": {"data": "raw_data"},
        "outputs": {"data": "filtered_data"},
    },
    {
        "layer": "store",
        "name": "write_filtered_parquet",
        "type": "config_op",
        "engine": "pandas",
        "value": "output/filtered.parquet",
        "inputs": {"data": "filtered_data"},
    },
]


class Project:
    """A temp directory holding configs, data and the Python modules of ``function`` steps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, text: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return p

    def sample_csv(self, rel: str = "data/sample.csv") -> Path:
        return write_sample_csv(self.root / rel)

    def pipeline(
        self, name: str, steps: Sequence[dict[str, Any]], *, filename: str | None = None, **settings: Any
    ) -> Path:
        """A YAML pipeline document ``{pipeline: name, **settings, steps: [...]}``."""
        doc = {"pipeline": name, **settings, "steps": list(steps)}
        return self.write(filename or f"{name}.yaml", yaml.safe_dump(doc, sort_keys=False))

    def odibi_json(self, rel: str, steps: Sequence[dict[str, Any]]) -> Path:
        """ODIBI's own form: a bare JSON list of steps."""
        return self.write(rel, json.dumps(list(steps), indent=2))

    def module(self, source: str, prefix: str = "odibi_fns") -> str:
        """Write a module of transform functions beside the configs; returns its (unique) name."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.write(f"{name}.py", source)
        return name

    def datasets_dir(self, pipeline: str) -> Path:
        return self.root / ".odibi" / "datasets" / pipeline


MULTIPROCESS_CONFIG = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}


def reconstructable_job(monkeypatch: Any, config: Path, job: str) -> dg.ReconstructableJob:
    """A job executor subprocesses can rebuild (what ``odibi-dagster run`` hands to Dagster);
    use with the ``cli_job_env`` fixture."""
    from odibi_dagster.translate import cli_run

    monkeypatch.setenv(cli_run.PATHS_ENV, json.dumps([str(config.resolve())]))
    monkeypatch.setenv(cli_run.JOB_ENV, job)
    cli_run.cli_definitions.cache_clear()
    cli_run._plans.cache_clear()
    return dg.reconstructable(cli_run.reconstruct_job)


def job_of(defs: dg.Definitions, name: str) -> dg.JobDefinition:
    return defs.resolve_job_def(name)


def run_pipeline(
    *paths: Any,
    job: str,
    instance: dg.DagsterInstance | None = None,
    selection: Iterable[dg.AssetKey] | None = None,
    **build_kwargs: Any,
) -> dg.ExecuteInProcessResult:
    """Build definitions from ``paths`` and run one pipeline's job in process."""
    defs = build_definitions(*paths, **build_kwargs)
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(),
        asset_selection=list(selection) if selection is not None else None,
        raise_on_error=False,
    )


def step_events(result: dg.ExecuteInProcessResult | dg.ExecuteJobResult, event_type: str) -> set[str]:
    """Step names (op name without the pipeline prefix) that had ``event_type`` (e.g. STEP_SUCCESS)."""
    return {
        ev.step_key.split("__", 1)[-1] for ev in result.all_events if ev.event_type_value == event_type and ev.step_key
    }


def run_step_events(instance: dg.DagsterInstance, run_id: str, event_type: str) -> set[str]:
    """Same as :func:`step_events`, read from an instance's event log."""
    out = set()
    for record in instance.all_logs(run_id):
        ev = record.dagster_event
        if ev is not None and ev.step_key and ev.event_type_value == event_type:
            out.add(ev.step_key.split("__", 1)[-1])
    return out


def failure_message(result: dg.ExecuteInProcessResult | dg.ExecuteJobResult, step: str) -> str:
    """The innermost error message of a failed step."""
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_key and ev.step_key.endswith(f"__{step}"):
            err = ev.event_specific_data.error
            while err.cause is not None:
                err = err.cause
            return err.message
    raise AssertionError(f"step {step} did not fail")


def materialization_metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    mats = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
    assert mats, f"{key.to_user_string()} was not materialized"
    return dict(mats[-1].materialization.metadata)


def sqlite_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def persistent_instance(home: Path) -> dg.DagsterInstance:
    """A real, on-disk Dagster instance (SQLite run/event storage) in ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ODIBI_BASE_DIR")}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ODIBI_CLI, *args], cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout
    )
