"""The dataset IO manager: every dataset persisted as Parquet under the base directory,
handed on as files (never only in memory), and SQL chains that never go through pandas."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from translate_support import (
    HIGH_VALUE_IDS,
    ODIBI_SIMPLE_STEPS,
    Project,
    failure_message,
    materialization_metadata,
    run_pipeline,
    step_events,
)

from odibi_dagster import DatasetRef, OdibiDatasetStore, OdibiIOManager, build_definitions


def test_every_dataset_is_persisted_as_parquet_under_the_base_dir(project: Project, tmp_path: Path) -> None:
    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    result = run_pipeline(path, job="simple_pipeline")
    assert result.success
    datasets = project.datasets_dir("simple_pipeline")
    assert sorted(p.relative_to(datasets).as_posix() for p in datasets.rglob("*.parquet")) == [
        "filtered_data/data.parquet",
        "raw_data/data.parquet",
    ]
    assert pq.ParquetFile(datasets / "raw_data" / "data.parquet").metadata.num_rows == 10
    assert pq.ParquetFile(datasets / "filtered_data" / "data.parquet").metadata.num_rows == 6
    md = materialization_metadata(result, dg.AssetKey(["simple_pipeline", "filtered_data"]))
    assert md["dagster/row_count"].value == 6
    assert str(datasets / "filtered_data" / "data.parquet") in str(md["dagster/uri"].value)
    columns = [c.name for c in md["dagster/column_schema"].schema.columns]
    assert columns == ["id", "name", "value", "category", "timestamp"]

    # with base_dir the working files move there
    base = tmp_path / "work"
    result = run_pipeline(path, job="simple_pipeline", base_dir=base)
    assert not result.success  # relative data paths moved too: there is no data/sample.csv under base
    (base / "data").mkdir(parents=True)
    (base / "data" / "sample.csv").write_bytes(project.path("data/sample.csv").read_bytes())
    assert run_pipeline(path, job="simple_pipeline", base_dir=base).success
    assert (base / ".odibi" / "datasets" / "simple_pipeline" / "filtered_data" / "data.parquet").exists()


def test_downstream_steps_read_persisted_datasets_in_a_later_run(project: Project) -> None:
    """No state lives only in memory: a new Definitions object, a new instance and a run that
    selects only the downstream steps still finds the upstream dataset on disk."""
    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    raw = dg.AssetKey(["simple_pipeline", "raw_data"])
    downstream = [
        dg.AssetKey(["simple_pipeline", "filtered_data"]),
        dg.AssetKey(["simple_pipeline", "write_filtered_parquet"]),
    ]

    missing = run_pipeline(path, job="simple_pipeline", selection=downstream)
    assert not missing.success
    message = failure_message(missing, "filter_high_value")
    assert "simple_pipeline/raw_data" in message and "has not been materialized" in message

    assert run_pipeline(path, job="simple_pipeline", selection=[raw]).success
    project.path("data/sample.csv").unlink()  # the source is gone; the dataset is what counts
    later = run_pipeline(path, job="simple_pipeline", selection=downstream)
    assert later.success
    assert step_events(later, "STEP_SUCCESS") == {"filter_high_value", "write_filtered_parquet"}
    assert pd.read_parquet(project.path("output/filtered.parquet"))["id"].tolist() == HIGH_VALUE_IDS


def test_a_chain_of_sql_steps_never_converts_to_pandas(project: Project) -> None:
    """DuckDB types that pandas cannot hold survive a chain of SQL steps exactly; a function
    step in the same pipeline (which does get pandas) loses them - so the test can tell."""
    project.write("data/ids.csv", "id\n1\n2\n3\n")
    fn = project.module("def identity(data):\n    return data\n")
    sql = (
        "SELECT CAST(id AS DECIMAL(18, 3)) AS amount, CAST(id AS UTINYINT) AS small, "
        "TIMESTAMPTZ '2024-01-01 00:00:00+00' AS at, [id, id + 1] AS pair, {'k': id} AS obj "
        "FROM data"
    )
    path = project.pipeline(
        "typed_chain",
        [
            {"layer": "ingest", "name": "read", "value": "data/ids.csv", "outputs": {"data": "ids"}},
            {
                "layer": "transform",
                "name": "shape",
                "type": "sql",
                "value": sql,
                "inputs": {"data": "ids"},
                "outputs": {"data": "shaped"},
            },
            {
                "layer": "transform",
                "name": "again",
                "type": "sql",
                "value": "SELECT * FROM s WHERE small > 1",
                "inputs": {"s": "shaped"},
                "outputs": {"data": "filtered"},
            },
            {
                "layer": "transform",
                "name": "third",
                "type": "sql",
                "value": "SELECT * FROM f ORDER BY amount",
                "inputs": {"f": "filtered"},
                "outputs": {"data": "ordered"},
            },
            {
                "layer": "transform",
                "name": "via_pandas",
                "type": "function",
                "value": f"{fn}.identity",
                "inputs": {"data": "ordered"},
                "outputs": {"data": "pandas_copy"},
            },
            {"layer": "store", "name": "save", "value": "out/ordered.parquet", "inputs": {"data": "ordered"}},
        ],
    )
    assert run_pipeline(path, job="typed_chain").success

    def schema(name: str) -> dict[str, str]:
        s = pq.read_schema(project.datasets_dir("typed_chain") / name / "data.parquet")
        return {f.name: str(f.type) for f in s}

    expected = {
        "amount": "decimal128(18, 3)",
        "small": "uint8",
        "at": "timestamp[us, tz=UTC]",
        "pair": "list<element: int64>",
        "obj": "struct<k: int64>",
    }
    for name in ("shaped", "filtered", "ordered"):
        assert schema(name) == expected, name
    assert {f.name: str(f.type) for f in pq.read_schema(project.path("out/ordered.parquet"))} == expected
    assert pq.read_table(project.datasets_dir("typed_chain") / "ordered" / "data.parquet").num_rows == 2
    # pandas turns DECIMAL into float64: the function step's output shows the difference
    assert schema("pandas_copy")["amount"] == "double"


def test_io_manager_persists_and_loads_plain_objects(tmp_path: Path) -> None:
    """The IO manager also serves ordinary Dagster assets returning pandas frames."""

    @dg.asset(io_manager_key="odibi_io")
    def numbers() -> pd.DataFrame:
        return pd.DataFrame({"n": [1, 2, 3]})

    @dg.asset(io_manager_key="odibi_io")
    def seen(numbers: DatasetRef) -> None:
        assert isinstance(numbers, DatasetRef)
        assert numbers.format == "parquet"
        assert pd.read_parquet(numbers.paths[0])["n"].tolist() == [1, 2, 3]

    defs = dg.Definitions(assets=[numbers, seen], resources={"odibi_io": OdibiIOManager(base_dir=str(tmp_path))})
    result = dg.materialize([numbers, seen], resources=defs.resources)
    assert result.success
    assert (tmp_path / "datasets" / "numbers" / "data.parquet").exists()
    md = materialization_metadata(result, dg.AssetKey("numbers"))
    assert md["dagster/row_count"].value == 3


def test_the_example_location_builds() -> None:
    repo = Path(__file__).resolve().parents[2]
    defs = build_definitions(repo / "definitions" / "pipelines")
    groups = {s.group_name for s in defs.resolve_all_asset_specs()}
    assert {"simple_pipeline", "sales_medallion"} <= groups


def test_one_dataset_store_serves_every_pipeline(project: Project) -> None:
    """One resource for all pipelines (not one IO manager each), and no step loads its data
    through Dagster's IO managers: every data output is ``Nothing``."""
    project.sample_csv()
    project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    project.odibi_json("second_pipeline.json", ODIBI_SIMPLE_STEPS)
    defs = build_definitions(project.root)
    keys = set(defs.resources or {})
    assert "odibi_datasets" in keys
    assert not [k for k in keys if k.startswith("odibi_io")], keys
    assert isinstance(defs.resources["odibi_datasets"], OdibiDatasetStore)
    repo = defs.get_repository_def()
    # Materializable: the observable source assets of the ingests (translate.sources) are not data.
    data_assets = [a for a in repo.assets_defs_by_key.values() if a.is_materializable]
    assert {a.op.name.split("__")[0] for a in data_assets} == {"simple_pipeline", "second_pipeline"}
    for assets_def in data_assets:
        assert "odibi_datasets" in assets_def.required_resource_keys
        # Inputs are deps, read by the store in the body: no value passes through Dagster.
        assert all(i.dagster_type.is_nothing for i in assets_def.op.ins.values()), assets_def.op.name
        assert all(out.dagster_type.is_nothing for out in assets_def.op.outs.values())


def test_hand_written_assets_read_odibi_datasets_through_the_io_manager(project: Project) -> None:
    """Embedding: a hand-written asset downstream of an odibi asset takes its dataset as an input."""
    project.sample_csv()
    path = project.odibi_json("simple_pipeline.json", ODIBI_SIMPLE_STEPS)
    odibi_defs = build_definitions(path)
    filtered = dg.AssetKey(["simple_pipeline", "filtered_data"])
    seen: dict[str, object] = {}

    @dg.asset(ins={"data": dg.AssetIn(key=filtered, input_manager_key="odibi_io")})
    def team_report(data: DatasetRef) -> None:
        seen["rows"] = len(pd.read_parquet(data.paths[0]))

    work_dir = project.root / ".odibi"
    defs = dg.Definitions.merge(
        odibi_defs,
        dg.Definitions(assets=[team_report], resources={"odibi_io": OdibiIOManager(base_dir=str(work_dir))}),
    )
    result = dg.materialize(
        [*odibi_defs.assets, team_report],  # type: ignore[list-item]
        resources=defs.resources,
        selection=dg.AssetSelection.assets(filtered).upstream() | dg.AssetSelection.assets(team_report),
    )
    assert result.success
    assert seen["rows"] == 6
