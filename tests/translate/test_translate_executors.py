"""A pipeline's ``executor:`` setting: in-process by default; multiprocess step processes are
forked from a warm forkserver and build only the job's pipeline, from the plan its run
process shared (no loading, validating and building of the rest of the code location)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from translate_support import Project, persistent_instance

from odibi_dagster import ConfigValidationError, build_definitions, load_pipeline

PROBE = '''
import json
import os
import sys

import pandas as pd


def probe(data):
    """Writes what this step's process holds: its pid and the ops whose pipelines it built."""
    import gc

    import dagster as dg

    # The assets this process built, whichever pipelines they belong to.
    built = {a.op.name for a in gc.get_objects() if isinstance(a, dg.AssetsDefinition) and a.is_executable}

    # Beside this module: forked step processes keep the environment of the forkserver's start.
    out = os.path.join(os.path.dirname(__file__), "probe")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{os.getpid()}.json"), "w") as fh:
        json.dump({"pid": os.getpid(), "ops": sorted(built),
                   "forkserver_preloaded": "odibi_dagster.translate.step_process" in sys.modules,
                   "shared": os.environ.get("ODIBI_STEP_PLANS")}, fh)
    return data
'''


def _steps(module: str) -> list[dict[str, Any]]:
    return [
        {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
        {
            "layer": "transform",
            "name": "probe",
            "type": "function",
            "value": f"{module}.probe",
            "inputs": {"data": "raw"},
            "outputs": {"data": "probed"},
        },
        {
            "layer": "transform",
            "name": "high",
            "type": "sql",
            "value": "SELECT * FROM probed WHERE value > 100",
            "inputs": {"probed": "probed"},
            "outputs": {"data": "high"},
        },
    ]


def _location(project: Project, executor: Any) -> Path:
    """A code location file over a folder of three pipelines; ``fast`` has the given executor."""
    project.sample_csv("pipelines/data/sample.csv")
    module = project.module(PROBE)
    (project.root / f"{module}.py").rename(project.root / "pipelines" / f"{module}.py")
    project.pipeline(
        "fast",
        _steps(module),
        filename="pipelines/fast.yaml",
        **({"executor": executor} if executor is not None else {}),
    )
    for other in ("other_a", "other_b"):
        project.pipeline(other, _steps(module), filename=f"pipelines/{other}.yaml")
    return project.write(
        "location.py",
        textwrap.dedent("""
        from pathlib import Path
        from odibi_dagster import build_definitions
        defs = build_definitions(Path(__file__).parent / "pipelines")
    """),
    )


def _run(
    location: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_config: dict | None = None
) -> tuple[dg.ExecuteJobResult, list[dict[str, Any]]]:
    out = location.parent / "pipelines" / "probe"
    # What a run worker of the code location holds: the job, rebuilt from the file by each step process.
    job = ReconstructableRepository.for_file(str(location), "defs", str(location.parent)).get_reconstructable_job(
        "fast"
    )
    with persistent_instance(tmp_path / "home") as instance:
        result = dg.execute_job(job, instance=instance, run_config=run_config or {}, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        records = [json.loads(p.read_text()) for p in out.glob("*.json")]
        pids = {e.pid for e in result.all_events if e.is_step_success}
    return result, [r | {"step_pids": pids} for r in records]


def test_the_executor_setting_accepts_a_name_or_a_mapping(project: Project) -> None:
    project.sample_csv()
    steps = [{"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}}]
    assert load_pipeline(project.pipeline("a", steps)).executor.type == "in_process"
    assert load_pipeline(project.pipeline("b", steps, executor="multiprocess")).executor.type == "multiprocess"
    cfg = load_pipeline(project.pipeline("c", steps, executor={"type": "multiprocess", "max_concurrent": 3})).executor
    assert (cfg.type, cfg.max_concurrent) == ("multiprocess", 3)
    for bad, words in (
        (["in_process"], "executor"),
        ({"type": "threads"}, "executor.type"),
        ({"type": "in_process", "max_concurrent": 4}, "max_concurrent needs type: multiprocess"),
    ):
        with pytest.raises(ConfigValidationError) as info:
            load_pipeline(project.pipeline("d", steps, executor=bad))
        assert words in str(info.value), str(info.value)


def test_jobs_and_the_ui_selection_default_to_in_process(project: Project) -> None:
    project.sample_csv()
    steps = [{"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}}]
    defs = build_definitions(project.pipeline("a", steps))
    job = defs.resolve_job_def("a")
    default = job.executor_def.config_schema.default_value
    assert default == {"in_process": {}}
    # "Materialize" on a selection in the UI runs the implicit asset job: in-process too.
    implicit = defs.resolve_implicit_global_asset_job_def()
    assert implicit.executor_def.config_schema.default_value == {"in_process": {}}


def test_in_process_runs_every_step_in_the_run_process(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _location(project, None)
    _, records = _run(location, tmp_path, monkeypatch)
    (record,) = records
    assert record["step_pids"] == {record["pid"]}  # one process ran all three steps


def test_multiprocess_step_processes_build_only_the_jobs_pipeline(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _location(project, {"type": "multiprocess", "max_concurrent": 2})
    result, records = _run(location, tmp_path, monkeypatch)
    (record,) = records
    assert len(record["step_pids"]) == 3  # a process per step
    assert record["forkserver_preloaded"], "the step process was not forked from the preloaded forkserver"
    assert record["shared"] and record["shared"].split(":", 1)[0] != str(record["pid"])
    # Only the pipeline of the job was built in the step process, none of the others.
    assert record["ops"] and all(op.startswith("fast__") for op in record["ops"]), record["ops"]
    assert {e.event_type_value for e in result.all_events} >= {"STEP_WORKER_STARTED"}
    # And the run process stops advertising its plans when the run is over.
    assert "ODIBI_STEP_PLANS" not in os.environ


def test_run_config_still_picks_the_other_executor(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _location(project, None)
    _, records = _run(
        location, tmp_path, monkeypatch, {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}
    )
    (record,) = records
    assert len(record["step_pids"]) == 3
    assert all(op.startswith("fast__") for op in record["ops"])
