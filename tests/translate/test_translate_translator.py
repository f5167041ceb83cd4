"""OdibiTranslator defaults and overrides, and the shape of what ``build_definitions`` returns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from odibi_testlib import (
    HIGH_VALUE_IDS,
    ODIBI_SIMPLE_STEPS,
    Project,
    failure_message,
    run_pipeline,
    step_events,
)

from odibi_dagster import (
    ConfigValidationError,
    OdibiConnection,
    OdibiStep,
    OdibiTranslator,
    OdibiTranslatorSettings,
    build_definitions,
    load_pipeline,
)


def specs_by_key(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    """The steps' assets (not the observable source assets of their source files)."""
    graph = defs.resolve_asset_graph()
    return {s.key: s for s in defs.resolve_all_asset_specs() if graph.get(s.key).is_materializable}


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


def code_reference(spec: dg.AssetSpec) -> dg.LocalFileCodeReference:
    refs = spec.metadata["dagster/code_references"].code_references
    assert len(refs) == 1
    assert isinstance(refs[0], dg.LocalFileCodeReference)
    return refs[0]


def medallion_steps(fn_module: str) -> list[dict[str, Any]]:
    return [
        {
            "layer": "ingest",
            "name": "read_sample_csv",
            "value": "data/sample.csv",
            "outputs": {"data": "raw"},
            "metadata": {"description": "The walkthrough's sample: ten items."},
        },
        {
            "layer": "transform",
            "name": "filter_high_value",
            "type": "sql",
            "value": "SELECT * FROM data WHERE value > 100 ORDER BY id",
            "inputs": {"data": "raw"},
            "outputs": {"data": "filtered"},
            "metadata": {"description": "Keeps the expensive items."},
        },
        {
            "layer": "transform",
            "name": "split_by_category",
            "type": "function",
            "value": f"{fn_module}.split",
            "params": {"category": "B"},
            "inputs": {"data": "filtered"},
            "outputs": {"picked": "picked", "others": "others"},
        },
        {
            "layer": "store",
            "name": "save_filtered",
            "value": "out/filtered.parquet",
            "inputs": {"data": "filtered"},
        },
        {
            "layer": "publish",
            "name": "publish_picked",
            "value": "out/picked.csv",
            "inputs": {"data": "picked"},
        },
    ]


SPLIT_FN = """
import pandas as pd

def split(data: pd.DataFrame, category: str) -> dict[str, pd.DataFrame]:
    mask = data["category"] == category
    return {"picked": data[mask], "others": data[~mask]}
"""


# ----------------------------------------------------------------------------- defaults


def test_default_specs_follow_the_design(project: Project) -> None:
    project.sample_csv()
    fn = project.module(SPLIT_FN)
    path = project.pipeline("shop", medallion_steps(fn))
    defs = build_definitions(path)
    specs = specs_by_key(defs)

    # keys: [pipeline, dataset] for ingest/transform outputs, [pipeline, step] for store/publish
    assert set(specs) == {
        dg.AssetKey(["shop", k]) for k in ("raw", "filtered", "picked", "others", "save_filtered", "publish_picked")
    }
    for spec in specs.values():
        assert spec.group_name == "shop"
        assert spec.tags["odibi/engine"] == "pandas"
        assert {"odibi", "duckdb"} <= spec.kinds
        assert spec.code_version and len(spec.code_version) >= 8

    raw, filtered = specs[dg.AssetKey(["shop", "raw"])], specs[dg.AssetKey(["shop", "filtered"])]
    assert raw.tags["odibi/layer"] == "ingest"
    assert filtered.tags["odibi/layer"] == "transform"
    assert specs[dg.AssetKey(["shop", "save_filtered"])].tags["odibi/layer"] == "store"
    assert specs[dg.AssetKey(["shop", "publish_picked"])].tags["odibi/layer"] == "publish"

    # the storage format is a kind: persisted datasets are Parquet, targets have their own format
    assert "parquet" in filtered.kinds
    assert "parquet" in specs[dg.AssetKey(["shop", "save_filtered"])].kinds
    assert "csv" in specs[dg.AssetKey(["shop", "publish_picked"])].kinds

    # description = metadata.description + the SQL
    assert filtered.description is not None
    assert filtered.description.startswith("Keeps the expensive items.")
    assert "SELECT * FROM data WHERE value > 100 ORDER BY id" in filtered.description
    assert raw.description is not None and "ten items" in raw.description

    # deps come from inputs
    assert {d.asset_key for d in filtered.deps} == {dg.AssetKey(["shop", "raw"])}
    assert {d.asset_key for d in specs[dg.AssetKey(["shop", "publish_picked"])].deps} == {
        dg.AssetKey(["shop", "picked"])
    }

    # a code reference to the config file and the step's line
    for name, key in [
        ("read_sample_csv", "raw"),
        ("filter_high_value", "filtered"),
        ("split_by_category", "picked"),
        ("save_filtered", "save_filtered"),
    ]:
        ref = code_reference(specs[dg.AssetKey(["shop", key])])
        assert Path(ref.file_path) == path.resolve()
        assert ref.line_number is not None
        # YAML: the step's item starts on the line of its first key (``- layer: ...``), its name
        # follows within the step's few lines.
        assert 0 <= line_of(path, f"name: {name}") - ref.line_number <= 1


def test_code_reference_points_at_the_json_step(project: Project) -> None:
    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    specs = specs_by_key(build_definitions(path))
    text = path.read_text().splitlines()
    for step, key in [
        ("read_sample_csv", "raw_data"),
        ("filter_high_value", "filtered_data"),
        ("write_filtered_parquet", "write_filtered_parquet"),
    ]:
        ref = code_reference(specs[dg.AssetKey(["simple_pipeline", key])])
        assert Path(ref.file_path) == path.resolve()
        assert ref.line_number is not None
        # the referenced line lies inside the step's JSON object
        start = max(i for i in range(ref.line_number) if text[i].strip() == "{")
        block = "\n".join(text[start : ref.line_number + 8])
        assert f'"name": "{step}"' in block


def test_code_version_is_a_hash_of_value_params_and_engine(project: Project) -> None:
    project.sample_csv()
    steps = [dict(s) for s in ODIBI_SIMPLE_STEPS]
    path = project.odibi_json("p.json", steps)
    before = {k: s.code_version for k, s in specs_by_key(build_definitions(path)).items()}
    assert len(set(before.values())) == 3

    # same config again: same versions (stable across processes: no id()/random in the hash)
    again = {k: s.code_version for k, s in specs_by_key(build_definitions(path)).items()}
    assert again == before

    steps[1] = {**steps[1], "value": "SELECT * FROM data WHERE value > 150 ORDER BY id"}
    steps[2] = {**steps[2], "params": {"compression": "zstd"}}
    project.odibi_json("p.json", steps)
    after = {k: s.code_version for k, s in specs_by_key(build_definitions(path)).items()}
    assert after[dg.AssetKey(["p", "raw_data"])] == before[dg.AssetKey(["p", "raw_data"])]
    assert after[dg.AssetKey(["p", "filtered_data"])] != before[dg.AssetKey(["p", "filtered_data"])]
    key = dg.AssetKey(["p", "write_filtered_parquet"])
    assert after[key] != before[key]

    # the engine is part of the hash (checked on the translator: Spark is not needed for that)
    pipeline = load_pipeline(path)
    step = pipeline.step("filter_high_value")
    tr = OdibiTranslator()
    pandas_v = tr.get_code_version(OdibiStep(pipeline, step, "filtered_data"))
    spark_v = tr.get_code_version(OdibiStep(pipeline, step.model_copy(update={"engine": "spark"}), "filtered_data"))
    assert pandas_v != spark_v
    assert tr.get_kinds(OdibiStep(pipeline, step.model_copy(update={"engine": "spark"}), "filtered_data")) >= {
        "odibi",
        "spark",
    }


# ----------------------------------------------------------------------------- overrides


class WarehouseTranslator(OdibiTranslator):
    """Overrides several attributes, as a team embedding ODIBI pipelines would."""

    def get_asset_key(self, node: OdibiStep) -> dg.AssetKey:
        last = node.dataset or node.step.name
        return dg.AssetKey(["warehouse", node.step.layer, last])

    def get_group_name(self, node: OdibiStep) -> str | None:
        return f"odibi_{node.step.layer}"

    def get_description(self, node: OdibiStep) -> str | None:
        return f"{node.pipeline.name}:{node.step.name}"

    def get_tags(self, node: OdibiStep) -> dict[str, str]:
        return {**super().get_tags(node), "team": "finance"}

    def get_kinds(self, node: OdibiStep) -> set[str]:
        return {"odibi", "duckdb", "warehouse"}

    def get_code_version(self, node: OdibiStep) -> str | None:
        return "v1"

    def get_owners(self, node: OdibiStep) -> list[str]:
        return ["team:finance"]

    def get_metadata(self, node: OdibiStep) -> dict[str, Any]:
        return {**super().get_metadata(node), "warehouse/table": node.dataset or node.step.name}


def test_translator_subclass_changes_every_overridden_attribute_and_still_runs(project: Project) -> None:
    project.sample_csv()
    fn = project.module(SPLIT_FN)
    path = project.pipeline("shop", medallion_steps(fn))
    defs = build_definitions(path, translator=WarehouseTranslator())
    specs = specs_by_key(defs)
    assert set(specs) == {
        dg.AssetKey(["warehouse", "ingest", "raw"]),
        dg.AssetKey(["warehouse", "transform", "filtered"]),
        dg.AssetKey(["warehouse", "transform", "picked"]),
        dg.AssetKey(["warehouse", "transform", "others"]),
        dg.AssetKey(["warehouse", "store", "save_filtered"]),
        dg.AssetKey(["warehouse", "publish", "publish_picked"]),
    }
    filtered = specs[dg.AssetKey(["warehouse", "transform", "filtered"])]
    assert filtered.group_name == "odibi_transform"
    assert filtered.description == "shop:filter_high_value"
    assert filtered.tags["team"] == "finance" and filtered.tags["odibi/layer"] == "transform"
    assert filtered.kinds == {"odibi", "duckdb", "warehouse"}
    assert filtered.code_version == "v1"
    assert filtered.owners == ["team:finance"]
    assert filtered.metadata["warehouse/table"] == "filtered"
    # deps follow the overridden keys
    assert {d.asset_key for d in filtered.deps} == {dg.AssetKey(["warehouse", "ingest", "raw"])}

    result = defs.resolve_job_def("shop").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    materialized = {m.asset_key for m in result.get_asset_materialization_events()}
    assert materialized == set(specs)
    # datasets are persisted under the overridden keys
    assert (project.root / ".odibi/datasets/warehouse/transform/picked/data.parquet").exists()
    picked = pd.read_csv(project.path("out/picked.csv"))
    assert set(picked["category"]) == {"B"}
    assert sorted(picked["id"]) == [4, 7, 10]
    assert set(picked["id"]) <= set(HIGH_VALUE_IDS)


def test_translator_can_be_partially_overridden(project: Project) -> None:
    class DescribeOnly(OdibiTranslator):
        def get_description(self, node: OdibiStep) -> str | None:
            return "custom"

    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    default = specs_by_key(build_definitions(path))
    custom = specs_by_key(build_definitions(path, translator=DescribeOnly()))
    assert set(default) == set(custom)
    for key, spec in custom.items():
        assert spec.description == "custom"
        assert spec.group_name == default[key].group_name == "simple_pipeline"
        assert spec.code_version == default[key].code_version
        assert spec.kinds == default[key].kinds


def test_translator_settings_switch_features_off(project: Project) -> None:
    project.sample_csv()
    read = {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}}
    keep = {"layer": "transform", "name": "keep", "type": "sql", "value": "SELECT * FROM raw", "inputs": {"raw": "raw"}}
    keep |= {"outputs": {"data": "kept"}, "checks": [{"not_null": ["id"]}], "metadata": {"automation": "eager"}}
    path = project.pipeline("switches", [read, keep])
    kept = dg.AssetKey(["switches", "kept"])
    default = build_definitions(path)
    spec = specs_by_key(default)[kept]
    assert spec.code_version and spec.automation_condition is not None and code_reference(spec)
    assert len(list(default.resolve_asset_graph().asset_check_keys)) == 1

    settings = OdibiTranslatorSettings(
        enable_code_references=False,
        enable_code_versions=False,
        enable_asset_checks=False,
        enable_automation_conditions=False,
    )
    assert OdibiTranslator(settings=settings).settings is settings
    assert OdibiTranslator().settings == OdibiTranslatorSettings()  # all on by default
    with pytest.raises(AttributeError):  # frozen, as DagsterDbtTranslatorSettings
        settings.enable_code_versions = True  # type: ignore[misc]
    off = build_definitions(path, translator=OdibiTranslator(settings=settings))
    spec = specs_by_key(off)[kept]
    assert spec.code_version is None and spec.automation_condition is None
    assert "dagster/code_references" not in spec.metadata and "odibi/config" in spec.metadata
    assert not list(off.resolve_asset_graph().asset_check_keys)
    result = off.resolve_job_def("switches").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success and not result.get_asset_check_evaluations()


def test_key_prefix_prefixes_every_key_and_runs(project: Project) -> None:
    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    defs = build_definitions(path, key_prefix=["lake", "odibi"])
    keys = set(defs.resolve_all_asset_keys())
    assert keys == {
        dg.AssetKey(["lake", "odibi", "simple_pipeline", *k.split("/")])
        for k in ("raw_data", "filtered_data", "write_filtered_parquet", "source/read_sample_csv")
    }
    assert set(build_definitions(path, key_prefix="lake").resolve_all_asset_keys()) == {
        dg.AssetKey(["lake", "simple_pipeline", *k.split("/")])
        for k in ("raw_data", "filtered_data", "write_filtered_parquet", "source/read_sample_csv")
    }
    result = defs.resolve_job_def("simple_pipeline").execute_in_process(raise_on_error=False)
    assert result.success
    assert len(pd.read_parquet(project.path("output/filtered.parquet"))) == 6


# ----------------------------------------------------------------------------- build_definitions


def test_one_asset_per_dataset_multi_asset_for_several_outputs_and_a_job_per_pipeline(
    project: Project,
) -> None:
    project.sample_csv()
    fn = project.module(SPLIT_FN)
    shop = project.pipeline("shop", medallion_steps(fn))
    simple = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    defs = build_definitions(shop, simple)

    split = defs.resolve_assets_def(dg.AssetKey(["shop", "picked"]))
    assert set(split.keys) == {dg.AssetKey(["shop", "picked"]), dg.AssetKey(["shop", "others"])}
    assert defs.resolve_assets_def(dg.AssetKey(["shop", "others"])) is split
    for key in (["shop", "raw"], ["shop", "filtered"], ["shop", "save_filtered"]):
        assert len(defs.resolve_assets_def(dg.AssetKey(key)).keys) == 1

    jobs = {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    assert jobs == {"shop", "simple_pipeline"}
    shop_job = defs.resolve_job_def("shop")
    assert {k.path[0] for k in shop_job.asset_layer.selected_asset_keys} == {"shop"}
    assert len(shop_job.asset_layer.selected_asset_keys) == 6


def test_two_pipelines_with_the_same_dataset_names_do_not_collide(project: Project) -> None:
    project.sample_csv()
    project.write("data/other.csv", "id,name,value,category\n1,x,1000,A\n2,y,5,B\n")
    first = [dict(s) for s in ODIBI_SIMPLE_STEPS]
    second = [dict(s) for s in ODIBI_SIMPLE_STEPS]
    second[0] = {**second[0], "value": "data/other.csv"}
    second[2] = {**second[2], "value": "output/other_filtered.parquet"}
    a = project.odibi_json("alpha.json", first)
    b = project.odibi_json("beta.json", second)
    defs = build_definitions(a, b)
    keys = set(defs.resolve_all_asset_keys())
    assert dg.AssetKey(["alpha", "filtered_data"]) in keys and dg.AssetKey(["beta", "filtered_data"]) in keys
    assert len(keys) == 8  # three assets and the ingest's source files per pipeline
    for job in ("alpha", "beta"):
        result = defs.resolve_job_def(job).execute_in_process(raise_on_error=False)
        assert result.success, job
    assert len(pd.read_parquet(project.path("output/filtered.parquet"))) == 6
    assert pd.read_parquet(project.path("output/other_filtered.parquet"))["name"].tolist() == ["x"]
    assert len(pd.read_parquet(project.datasets_dir("alpha") / "filtered_data" / "data.parquet")) == 6
    assert len(pd.read_parquet(project.datasets_dir("beta") / "filtered_data" / "data.parquet")) == 1

    # the same pipeline twice under the same key prefix would collide: refused, nothing built
    with pytest.raises(ConfigValidationError):
        build_definitions(a, project.odibi_json("copy/alpha.json", first))


def test_connect_steps_become_resources(project: Project) -> None:
    project.sample_csv()
    path = project.pipeline(
        "db_pipe",
        [
            {"layer": "connect", "name": "warehouse", "value": "sqlite:///db/warehouse.sqlite"},
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "store",
                "name": "save",
                "value": "items",
                "params": {"connection": "warehouse"},
                "inputs": {"data": "raw"},
            },
        ],
    )
    defs = build_definitions(path)
    conns = {k: v for k, v in (defs.resources or {}).items() if isinstance(v, OdibiConnection)}
    assert len(conns) == 1
    ((key, conn),) = conns.items()
    assert "warehouse" in key
    assert conn.url == "sqlite:///db/warehouse.sqlite"
    # the store asset requires it
    save = defs.resolve_assets_def(dg.AssetKey(["db_pipe", "save"]))
    assert key in save.required_resource_keys
    # ... and nothing else does
    raw = defs.resolve_assets_def(dg.AssetKey(["db_pipe", "raw"]))
    assert key not in raw.required_resource_keys


def test_invalid_config_raises_and_builds_nothing(project: Project) -> None:
    project.sample_csv()
    good = project.odibi_json("good.json", ODIBI_SIMPLE_STEPS)
    bad = project.odibi_json(
        "bad.json",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "t",
                "type": "sql",
                "value": "SELECT * FROM nope",
                "inputs": {"data": "raw"},
                "outputs": {"data": "out"},
            },
            {"layer": "store", "name": "s", "value": "x.parquet", "inputs": {"data": "missing"}},
            {"layer": "bogus", "name": "b", "value": "x"},
        ],
    )
    with pytest.raises(ConfigValidationError) as info:
        build_definitions(good, bad)
    problems = info.value.problems
    assert {p.step for p in problems} >= {"t", "s", "b"}
    assert all(p.file.endswith("bad.json") for p in problems)
    # nothing ran, nothing was written
    assert not (project.root / ".odibi").exists()
    assert not (project.root / "output").exists()


def test_in_memory_configs_build_and_validate(project: Project) -> None:
    project.sample_csv()
    pipeline = load_pipeline(project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS))
    defs = build_definitions(pipeline)
    assert dg.AssetKey(["simple_pipeline", "filtered_data"]) in set(defs.resolve_all_asset_keys())
    broken = pipeline.model_copy(update={"steps": pipeline.steps[1:]})
    with pytest.raises(ConfigValidationError, match="not produced by any step"):
        build_definitions(broken)


def test_relative_paths_resolve_against_the_config_directory(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_pipeline(path, job="simple_pipeline")
    assert result.success
    assert len(pd.read_parquet(project.path("output/filtered.parquet"))) == 6
    assert (project.root / ".odibi/datasets/simple_pipeline/raw_data/data.parquet").exists()
    assert os.listdir(elsewhere) == []


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_base_dir_moves_relative_paths_and_working_files(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    write_here = Project(base)
    write_here.sample_csv()  # the data lives under base_dir, not beside the config
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    if how == "argument":
        result = run_pipeline(path, job="simple_pipeline", base_dir=base)
    else:
        monkeypatch.setenv("ODIBI_BASE_DIR", str(base))
        result = run_pipeline(path, job="simple_pipeline")
    assert result.success
    assert len(pd.read_parquet(base / "output/filtered.parquet")) == 6
    assert (base / ".odibi/datasets/simple_pipeline/filtered_data/data.parquet").exists()
    assert not (project.root / "output").exists()
    assert not (project.root / ".odibi").exists()


def test_missing_source_fails_the_ingest_step_with_its_path(project: Project) -> None:
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)  # no data/sample.csv
    result = run_pipeline(path, job="simple_pipeline")
    assert not result.success
    assert "sample.csv" in failure_message(result, "read_sample_csv")
    assert step_events(result, "STEP_SUCCESS") == set()


def test_free_text_step_and_dataset_names_build_and_run(project: Project) -> None:
    """ODIBI's tables hold step names as free text ("Save Gold Table"); datasets may have dashes.

    Key parts keep letters, digits, '_', '-' and '.'; other characters become '_' so that
    Dagster can derive check names from every key (a check on "high value" used to fail)."""
    project.sample_csv()
    path = project.odibi_json(
        "sales-2024.json",
        [
            {
                "layer": "ingest",
                "name": "Read Sample",
                "value": "data/sample.csv",
                "outputs": {"data": "raw-data"},
            },
            {
                "layer": "transform",
                "name": "filter.high",
                "type": "sql",
                "value": "SELECT * FROM data WHERE value > 100",
                "inputs": {"data": "raw-data"},
                "outputs": {"data": "high value"},
                "checks": [{"not_null": ["value"]}],
            },
            {
                "layer": "store",
                "name": "Save Gold Table",
                "value": "out/gold.csv",
                "inputs": {"data": "high value"},
            },
            {
                "layer": "publish",
                "name": "publish.v2",
                "value": "out/gold.json",
                "inputs": {"data": "high value"},
            },
        ],
    )
    defs = build_definitions(path)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {
        "sales-2024/raw-data",
        "sales-2024/high_value",
        "sales-2024/Save_Gold_Table",
        "sales-2024/publish.v2",
        "sales-2024/source/Read_Sample",  # the ingest's source files
    }
    (job,) = [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]
    result = job.execute_in_process(raise_on_error=False)
    assert result.success
    assert len(pd.read_csv(project.path("out/gold.csv"))) == 6
    assert {m.asset_key.path[-1] for m in result.get_asset_materialization_events()} == {
        "raw-data",
        "high_value",
        "Save_Gold_Table",
        "publish.v2",
    }
