"""A config that validates must build: user-chosen names with any characters map to stable,
collision-free Dagster names, and deep chains build (or are rejected at validation)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.execution.api import create_execution_plan

from odibi_dagster import ConfigValidationError, build_definitions, load_pipelines
from odibi_dagster.config.names import asset_key_part, dagster_name
from odibi_dagster.config.validation import dependencies


def _pipeline(tmp_path: Path, name: str, step: str = "raw", dataset: str = "raw", file: str = "p.yaml") -> Path:
    (tmp_path / "in.csv").write_text("id,v\n1,a\n2,b\n")
    config = tmp_path / file
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": name,
                "steps": [
                    {
                        "name": step,
                        "layer": "ingest",
                        "value": "in.csv",
                        "outputs": {"data": dataset},
                        "checks": [{"not_null": ["id"]}, {"unique": ["id"]}],
                    },
                    {
                        "name": f"{step} out",
                        "layer": "store",
                        "value": f"{dagster_name(name)}.parquet",
                        "inputs": {"data": dataset},
                    },
                ],
            },
            allow_unicode=True,
        )
    )
    return config


@pytest.mark.parametrize("name", ["名前", "a\u202eb c", "café-daily", "Ünïcödé pipeline"])
def test_non_ascii_names_validate_build_and_run(tmp_path: Path, name: str) -> None:
    config = _pipeline(tmp_path, name, step=f"{name} read", dataset=f"{name} data")
    load_pipelines(config)  # validates
    defs = build_definitions(config, base_dir=tmp_path)
    job = defs.resolve_job_def(dagster_name(name))
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 2 and all(e.event_specific_data.passed for e in checks)
    assert (tmp_path / f"{dagster_name(name)}.parquet").exists()


def test_dagster_names_are_valid_stable_and_distinct() -> None:
    names = ["名前", "名字", "a\u202eb", "ab", "café", "cafe", "input", "1st", "sales-daily"]
    mapped = [dagster_name(n) for n in names]
    assert all(dg._core.definitions.utils.VALID_NAME_REGEX.match(m) for m in mapped), mapped
    assert len(set(mapped)) == len(names), mapped
    # Stable across processes and releases: the hash is of the name itself.
    assert dagster_name("名前") == "u_u7ec26292"
    assert dagster_name("café") == "cafe_u850f7dc4"
    assert dagster_name("sales-daily") == "sales_daily"  # ASCII names keep their readable form
    assert dagster_name("input") == "input_" and dagster_name("1st") == "_1st"
    assert asset_key_part("sales-daily") == "sales-daily" and asset_key_part("名前") == "u_u7ec26292"


def test_two_non_ascii_pipelines_get_distinct_jobs(tmp_path: Path) -> None:
    _pipeline(tmp_path, "名前", file="a.yaml")
    _pipeline(tmp_path, "名字", file="b.yaml")
    defs = build_definitions(tmp_path, base_dir=tmp_path)
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {dagster_name("名前"), dagster_name("名字")} <= jobs


def _chain(tmp_path: Path, steps: int) -> Path:
    (tmp_path / "in.csv").write_text("id\n1\n")
    chain = [{"name": "s0", "layer": "ingest", "value": "in.csv", "outputs": {"data": "d0"}}]
    chain += [
        {
            "name": f"s{i}",
            "layer": "transform",
            "type": "sql",
            "value": f"SELECT * FROM d{i - 1}",
            "inputs": {f"d{i - 1}": f"d{i - 1}"},
            "outputs": {"data": f"d{i}"},
        }
        for i in range(1, steps)
    ]
    config = tmp_path / "deep.yaml"
    config.write_text(yaml.safe_dump({"pipeline": "deep", "steps": chain}))
    return config


def test_a_chain_deeper_than_the_recursion_limit_builds(tmp_path: Path) -> None:
    # 1,200 steps used to end in a RecursionError inside Dagster's graph walk.
    defs = build_definitions(_chain(tmp_path, 1_200), base_dir=tmp_path)
    job = defs.resolve_job_def("deep")
    assert len(job.graph.node_defs) == 1_200

    assert len(create_execution_plan(job).step_keys_to_execute) == 1_200


def test_a_chain_past_the_limit_is_rejected_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dependencies, "MAX_CHAIN_DEPTH", 40)
    with pytest.raises(ConfigValidationError) as err:
        load_pipelines(_chain(tmp_path, 41))
    [problem] = err.value.problems
    assert problem.step == "s40" and problem.field == "inputs"
    assert "ends a chain of 41 dependent steps; at most 40 are supported" in problem.message
    load_pipelines(_chain(tmp_path, 40))  # at the limit: accepted
