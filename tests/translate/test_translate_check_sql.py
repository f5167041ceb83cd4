"""SQL checks render as templates like step SQL, and a check that cannot be evaluated is a
failed check: a ``warn`` check never fails its step."""

from __future__ import annotations

import dagster as dg
from translate_support import Project

from odibi_dagster import build_definitions


def _steps(check: dict) -> list[dict]:
    return [
        {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}, "checks": [check]}
    ]


def _check_results(result: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def test_check_sql_renders_the_partition_key(project: Project) -> None:
    project.sample_csv()
    check = {"sql": "SELECT * FROM data WHERE {{ partition_key }} <> 'a' AND value < 0", "severity": "error"}
    path = project.pipeline("tpl", _steps(check), partitions={"type": "static", "values": ["a", "b"]})
    result = (
        build_definitions(path)
        .resolve_job_def("tpl")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key="b")
    )
    assert result.success
    (evaluation,) = _check_results(result)
    assert evaluation.passed
    assert "'b' <> 'a'" in evaluation.metadata["query"].value


def test_a_warn_check_that_cannot_run_does_not_fail_its_step(project: Project) -> None:
    project.sample_csv()
    check = {"sql": "SELECT * FROM data WHERE CAST(name AS INTEGER) > 0", "severity": "warn"}
    path = project.pipeline("warned", _steps(check))
    result = (
        build_definitions(path)
        .resolve_job_def("warned")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert result.success
    (evaluation,) = _check_results(result)
    assert not evaluation.passed
    assert "Conversion Error" in evaluation.metadata["odibi/check_error"].value
