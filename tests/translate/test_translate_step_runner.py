"""``build_definitions(step_runner=...)``: what each step's asset runs; and the Definitions of
several ``build_definitions`` calls merging (shared default resources and executor)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
from odibi_testlib import HIGH_VALUE_IDS, ODIBI_SIMPLE_STEPS, Project

from odibi_dagster import StepInvocation, build_definitions


def test_a_step_runner_wraps_every_step_and_can_replace_one(project: Project) -> None:
    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    seen: list[tuple[str, str, str | None]] = []

    def runner(context: dg.AssetExecutionContext, step: StepInvocation) -> Iterator[Any]:
        seen.append((step.step.name, step.pipeline.name, step.node.dataset))
        if step.step.layer == "store":  # a dry run instead of the write
            yield dg.MaterializeResult(metadata={"dry_run": True})
            return
        yield from step.execute()

    defs = build_definitions(path, step_runner=runner)
    result = defs.resolve_job_def("simple_pipeline").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert seen == [
        ("read_sample_csv", "simple_pipeline", "raw_data"),
        ("filter_high_value", "simple_pipeline", "filtered_data"),
        ("write_filtered_parquet", "simple_pipeline", None),
    ]
    assert not project.path("output/filtered.parquet").exists()
    filtered = pd.read_parquet(next(project.datasets_dir("simple_pipeline").glob("filtered_data*")))
    assert list(filtered["id"]) == HIGH_VALUE_IDS  # the other steps ran as usual


def test_definitions_of_two_calls_merge(project: Project) -> None:
    project.sample_csv()
    first = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    second = project.pipeline("other", ODIBI_SIMPLE_STEPS[:2])
    merged = dg.Definitions.merge(build_definitions(first), build_definitions(second))
    assert {k.path[0] for k in merged.resolve_all_asset_keys()} == {"simple_pipeline", "other"}
    for job in ("simple_pipeline", "other"):
        assert merged.resolve_job_def(job).execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
