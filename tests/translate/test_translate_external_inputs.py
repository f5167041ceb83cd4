"""External inputs: a step reads a dataset that an asset outside the pipeline produces (another
code location's hand-written asset). The step's asset depends on that asset's key, so the asset
graph links the two, and it reads the data where the config says the asset writes it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
from translate_support import Project, failure_message, materialization_metadata

from odibi_dagster import build_definitions

TEAM_KEY = dg.AssetKey(["team", "category_targets"])


def _pipeline(project: Project) -> Path:
    project.sample_csv()
    return project.pipeline(
        "targets",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "against_target",
                "type": "sql",
                "value": "SELECT r.category, SUM(r.value) AS total, MAX(t.target) AS target "
                "FROM raw r JOIN targets t ON r.category = t.category GROUP BY r.category ORDER BY r.category",
                "inputs": {"raw": "raw", "targets": "category_targets"},
                "outputs": {"data": "vs_target"},
            },
            {"layer": "store", "name": "save", "value": "out/vs_target.csv", "inputs": {"data": "vs_target"}},
        ],
        external_inputs={
            "category_targets": {
                "asset_key": "team/category_targets",
                "path": "shared/category_targets.parquet",
                "description": "Targets per category, owned by the planning team.",
            }
        },
    )


@dg.asset(key=TEAM_KEY)
def category_targets() -> None:
    """The other team's asset (in a real deployment it lives in their own code location)."""


def test_the_step_depends_on_the_external_asset_and_reads_what_it_wrote(project: Project) -> None:
    odibi = build_definitions(_pipeline(project))
    vs_target = dg.AssetKey(["targets", "vs_target"])
    # The dep is on the other location's key as written (no key prefix, no pipeline group).
    defs = dg.Definitions.merge(odibi, dg.Definitions(assets=[category_targets]))
    graph = defs.resolve_asset_graph()
    assert graph.get(vs_target).parent_keys == {TEAM_KEY, dg.AssetKey(["targets", "raw"])}
    assert TEAM_KEY in odibi.resolve_asset_graph().get(vs_target).parent_keys  # alone too (an external stub)
    prefixed = build_definitions(project.path("targets.yaml"), key_prefix="odibi")
    assert TEAM_KEY in prefixed.resolve_asset_graph().get(dg.AssetKey(["odibi", "targets", "vs_target"])).parent_keys

    # What the team's asset writes, where the config says it does.
    shared = project.path("shared")
    shared.mkdir()
    pd.DataFrame({"category": ["A", "B", "C"], "target": [100, 200, 300]}).to_parquet(
        shared / "category_targets.parquet"
    )
    result = odibi.resolve_job_def("targets").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    out = pd.read_csv(project.path("out/vs_target.csv"))
    assert out.to_dict("list") == {"category": ["A", "B", "C"], "total": [269, 730, 371], "target": [100, 200, 300]}
    lineage = materialization_metadata(result, vs_target)["dagster/column_lineage"].value
    assert {d.asset_key for d in lineage.deps_by_column["target"]} == {TEAM_KEY}


def test_a_missing_external_dataset_fails_the_step_naming_the_asset(project: Project) -> None:
    result = (
        build_definitions(_pipeline(project))
        .resolve_job_def("targets")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert not result.success
    message = failure_message(result, "against_target")
    assert "Failure: External input team/category_targets has not been written to " in message
    assert str(project.path("shared/category_targets.parquet")) in message
