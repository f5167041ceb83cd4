"""``OdibiPipelineComponent`` loaded the way a ``dg`` project loads it (Dagster's component tree
over a defs folder): the scaffolded starter pipeline, ``translation`` (with Dagster's own
translation test cases), ``translation_settings``, ``post_processing``, and a subclass overriding
``execute``. Jobs run on real Dagster and DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from dagster.components.testing.test_cases import TranslationTestCase, test_cases

from odibi_dagster import OdibiPipelineComponent, StepInvocation

KEYS = ("orders", "revenue_by_region", "save_revenue")
REVENUE = pd.DataFrame(
    {"region": ["east", "north", "south", "west"], "orders": [5, 5, 5, 5], "revenue": [222.5, 292.5, 187.5, 257.5]}
)


@pytest.fixture(autouse=True)
def _no_base_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ODIBI_BASE_DIR", raising=False)


@pytest.fixture
def sandbox() -> Iterator[Any]:
    with create_defs_folder_sandbox() as box:
        yield box


def _run(defs: dg.Definitions, job: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(instance=dg.DagsterInstance.ephemeral())


def _text(value: Any) -> Any:
    """A metadata entry's value, whether Dagster normalized it to a MetadataValue yet or not."""
    return value.value if isinstance(value, dg.MetadataValue) else value


def _with(defs_path: Path, attributes: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """The scaffolded defs.yaml with ``attributes`` added, and top-level keys (``post_processing``)."""
    doc = yaml.safe_load((defs_path / "defs.yaml").read_text())
    doc["attributes"].update(attributes or {})
    return {**doc, **top}


@pytest.mark.parametrize("scaffold_format", ["yaml", "python"])
def test_scaffolded_starter_pipeline_loads_and_runs(sandbox: Any, scaffold_format: str) -> None:
    path = sandbox.scaffold_component(OdibiPipelineComponent, "sales", scaffold_format=scaffold_format)
    written = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
    config = "defs.yaml" if scaffold_format == "yaml" else "component.py"
    assert written == {config, "pipeline.yaml", "data/orders.csv"}
    with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
        if scaffold_format == "python":  # a folder holding component.py, whose `load` gives the component
            (python_file,) = component.children.values()
            (component,) = python_file.components.values()
        assert isinstance(component, OdibiPipelineComponent)
        assert set(defs.resolve_all_asset_keys()) == {dg.AssetKey(["sales", k]) for k in KEYS}
        assert len(list(defs.resolve_asset_graph().asset_check_keys)) == 3
        result = _run(defs, "sales")
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    pd.testing.assert_frame_equal(pd.read_csv(path / "output" / "revenue_by_region.csv"), REVENUE)


def test_translation_templates_every_step_and_post_processing_applies(sandbox: Any) -> None:
    path = sandbox.scaffold_component(OdibiPipelineComponent, "sales")
    translation = {
        "group_name": "odibi_{{ pipeline.name }}",
        "key_prefix": ["lake"],
        "tags": {"layer": "{{ step.layer }}"},
        "owners": ["team:sales"],
        "kinds": ["odibi", "{{ 'csv' if step.layer == 'store' else 'duckdb' }}"],
        "description": "{{ step.name }} of {{ pipeline.name }}: {{ spec.description }}",
        "metadata": {"dataset": "{{ dataset or 'none' }}"},
    }
    doc = _with(
        path,
        {"translation": translation, "translation_settings": {"enable_code_references": False}},
        post_processing={"assets": [{"target": "*", "attributes": {"tags": {"reviewed": "yes"}}}]},
    )
    with sandbox.swap_defs_file(path / "defs.yaml", doc), sandbox.load_component_and_build_defs(path) as (_, defs):
        specs = {s.key: s for s in defs.resolve_all_asset_specs()}
        orders, revenue, save = (dg.AssetKey(["lake", "sales", k]) for k in KEYS)
        assert set(specs) == {orders, revenue, save}
        assert {s.group_name for s in specs.values()} == {"odibi_sales"}
        assert specs[orders].tags["layer"] == "ingest" and specs[save].tags["layer"] == "store"
        assert all(s.tags["reviewed"] == "yes" and s.tags["odibi/engine"] == "pandas" for s in specs.values())
        assert all(s.owners == ["team:sales"] for s in specs.values())
        assert specs[save].kinds == {"odibi", "csv"} and specs[revenue].kinds == {"odibi", "duckdb"}
        assert specs[orders].description == "read_orders of sales: Reads `data/orders.csv`"
        assert _text(specs[orders].metadata["dataset"]) == "orders" and _text(specs[save].metadata["dataset"]) == "none"
        # Dependencies and checks follow the translated keys; the step's own metadata stays.
        assert [d.asset_key for d in specs[save].deps] == [revenue]
        assert {k.asset_key for k in defs.resolve_asset_graph().asset_check_keys} == {orders, revenue}
        assert _text(specs[orders].metadata["odibi/step"]) == "read_orders"
        refs = specs[orders].metadata["dagster/code_references"].code_references
        assert [r.label for r in refs if r.label == "ODIBI config"] == []  # translation_settings: off
        result = _run(defs, "sales")
    assert result.success
    assert {m.asset_key for m in result.get_asset_materialization_events()} == {orders, revenue, save}


CASES = {case.name: case for case in test_cases}


@pytest.mark.parametrize("case", test_cases, ids=list(CASES))
def test_dagster_translation_cases(sandbox: Any, case: TranslationTestCase) -> None:
    """Dagster's own translation test cases (what every integration component is held to). Deps and
    partitions come from the pipeline config, so a translation that changes them is refused."""
    path = sandbox.scaffold_component(OdibiPipelineComponent, "sales")
    doc = _with(path, {"translation": case.attributes})
    with sandbox.swap_defs_file(path / "defs.yaml", doc):
        if case.name in ("deps", "partitions_defs"):
            with pytest.raises(Exception) as info, sandbox.load_component_and_build_defs(path):
                pass
            cause = info.value.__cause__
            assert "translation of step 'read_orders' changes its deps or partitions_def" in str(cause)
            return
        with sandbox.load_component_and_build_defs(path) as (_, defs):
            specs = list(defs.resolve_all_asset_specs())
            expected = {dg.AssetKey(["sales", k]) for k in KEYS}
            if case.key_modifier is not None:
                expected = {case.key_modifier(k) for k in expected}
            assert {s.key for s in specs} == expected
            assert all(case.assertion(s) for s in specs)


RECORDED: list[tuple[str, str]] = []


class AuditedPipeline(OdibiPipelineComponent):
    """Logs around every step, and replaces the store step by a dry run."""

    def execute(self, context: dg.AssetExecutionContext, step: StepInvocation) -> Iterator[Any]:
        RECORDED.append((step.step.name, step.pipeline.name))
        context.log.info(f"audit: {step.step.layer} step {step.step.name}")
        if step.step.layer == "store":
            yield dg.MaterializeResult(metadata={"dry_run": True, "target": step.step.value})
            return
        yield from super().execute(context, step)


def test_a_subclass_overrides_the_execution_of_steps(sandbox: Any) -> None:
    path = sandbox.scaffold_component(OdibiPipelineComponent, "sales")
    RECORDED.clear()
    defs = AuditedPipeline(paths=[str(path / "pipeline.yaml")]).build_defs(dg.ComponentTree.for_test().load_context)
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("sales").execute_in_process(instance=instance)
        messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert result.success
    assert RECORDED == [("read_orders", "sales"), ("revenue_by_region", "sales"), ("save_revenue", "sales")]
    assert [m for m in messages if m.startswith("audit: ")] == [
        "audit: ingest step read_orders",
        "audit: transform step revenue_by_region",
        "audit: store step save_revenue",
    ]
    save = dg.AssetKey(["sales", "save_revenue"])
    (mat,) = [m for m in result.get_asset_materialization_events() if m.asset_key == save]
    assert mat.materialization.metadata["dry_run"].value is True
    assert not (path / "output").exists()  # the store step itself did not run
    # The other steps ran as usual: their datasets and checks.
    checks = {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        ("orders", "not_null__order_id"): True,
        ("orders", "unique__order_id"): True,
        ("revenue_by_region", "row_count"): True,
    }


def test_two_components_in_one_project_merge(sandbox: Any) -> None:
    """Each component's Definitions bring the engine and dataset-store resources and the default
    executor; they are the same objects, so Dagster merges the components' Definitions."""
    sandbox.scaffold_component(OdibiPipelineComponent, "sales")
    sandbox.scaffold_component(OdibiPipelineComponent, "marts")
    with sandbox.build_all_defs() as defs:
        assert {k.path[0] for k in defs.resolve_all_asset_keys()} == {"sales", "marts"}
        for job in ("sales", "marts"):
            assert _run(defs, job).success
